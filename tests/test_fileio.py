"""Atomic outputs: the mode a plain open() gives (umask honoured), durable fsync, no debris."""

import os
import stat

import pytest

from seglab.fileio import atomic_path, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_the_umask_like_open(tmp_path, umask, mask, mode):
    umask(mask)
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    with atomic_path(tmp_path / "c.bin", durable=True) as tmp:
        tmp.write_bytes(b"c")
    with open(tmp_path / "plain.txt", "w") as f:  # the reference
        f.write("x")
    for name in ("a.txt", "b.json", "c.bin", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def fd_path(fd):
    """The file behind a descriptor (Linux), else the descriptor itself."""
    link = f"/proc/self/fd/{fd}"
    return os.path.realpath(link) if os.path.exists(link) else fd


def test_durable_fsyncs_file_before_rename_and_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", fd_path(fd)))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "sub" / "model.ckpt"
    with atomic_path(target, durable=True) as tmp:
        tmp.write_bytes(b"weights")
    assert target.read_bytes() == b"weights"
    expected = ["fsync", "replace", "fsync"] if os.name != "nt" else ["fsync", "replace"]  # no folder fsync on Windows
    assert [e[0] for e in events] == expected
    if os.path.exists("/proc/self/fd"):
        assert events[0][1].endswith(".tmp.ckpt") and events[2][1] == str(target.parent.resolve())
    events.clear()
    write_text_atomic(tmp_path / "plain.txt", "x")  # not durable: no flush
    assert [e[0] for e in events] == ["replace"]


def test_failure_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, durable=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_output_checks_name_the_path_and_create_nothing(tmp_path, monkeypatch):
    from seglab.errors import DataError
    from seglab.fileio import check_output_dir, check_output_file

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert check_output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "new" / "r.json", "--json") == tmp_path / "new" / "r.json"
    assert not (tmp_path / "new").exists()
    with pytest.raises(DataError, match="--out must be a folder, but this is a file"):
        check_output_dir(afile, "--out")
    with pytest.raises(DataError, match=f"cannot create --out: {afile} is a file"):
        check_output_dir(afile / "run", "--out")
    with pytest.raises(DataError, match="--json must be a file, but this is a folder"):
        check_output_file(tmp_path, "--json")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as for a user without write permission
    with pytest.raises(DataError, match=f"cannot write --out: permission denied on {tmp_path}"):
        check_output_dir(tmp_path / "run", "--out")


def test_atomic_path_errors_name_the_target(tmp_path):
    from seglab.errors import DataError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="afile/out.txt: cannot write"):
        write_text_atomic(tmp_path / "afile" / "out.txt", "y")
    (tmp_path / "adir").mkdir()
    with pytest.raises(DataError, match="adir: cannot write"):
        write_text_atomic(tmp_path / "adir", "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no temporary debris
