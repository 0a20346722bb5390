"""``seglab train``: bad input ends in one line ``seglab: error: ...`` and exit 2, before any training."""

from types import SimpleNamespace

import pytest

import seglab.cli
import seglab.engine.trainer


@pytest.fixture
def trained(monkeypatch):
    """Only the train command, and ``train`` replaced by a recorder: these tests are about the
    checks before training."""
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"train": "seglab.cli.train"})
    calls = []

    def fake_train(config, resume=False, **kw):
        calls.append((config, resume))
        return SimpleNamespace(best_score=0.5, monitor="val/aji", steps=1, epochs=1, best_checkpoint="x")

    monkeypatch.setattr(seglab.engine.trainer, "train", fake_train)
    return calls


@pytest.fixture
def data(tmp_path):
    from seglab.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=2, size=32, seed=0)
    return tmp_path / "data"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("seglab: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_existing_run_is_not_silently_replaced(trained, data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.ckpt").write_bytes(b"the old model")
    argv = ["train", "--data", str(data), "--out", str(run), "--max-steps", "1"]
    assert seglab.cli.main(argv) == 2
    err = _one_error_line(capsys)
    assert f"{run}: holds a trained run (best.ckpt)" in err and "--overwrite" in err and "--resume" in err
    assert not trained and (run / "best.ckpt").read_bytes() == b"the old model"
    assert seglab.cli.main([*argv, "--overwrite"]) == 0 and len(trained) == 1
    assert seglab.cli.main([*argv, "--overwrite", "--resume"]) == 2  # one or the other
    assert "not allowed with argument" in _one_error_line(capsys)


def test_empty_or_checkpoint_free_run_folder_is_fine(trained, data, tmp_path):
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for run in (empty, other, tmp_path / "new"):
        assert seglab.cli.main(["train", "--data", str(data), "--out", str(run), "--max-steps", "1"]) == 0
    assert len(trained) == 3
