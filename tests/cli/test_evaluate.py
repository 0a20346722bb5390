"""``seglab evaluate`` through the CLI entry point."""

import json

import numpy as np
import pytest

import seglab.cli
from seglab.data.io import write_label


@pytest.fixture(autouse=True)
def only_evaluate(monkeypatch):
    """Register only this command, so the test does not depend on the other commands' modules."""
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"evaluate": "seglab.cli.evaluate"})


@pytest.fixture
def labels(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("t1", "t2"):
        lab = np.zeros((32, 32), np.int64)
        for k in range(5):
            y, x = rng.integers(0, 28, 2)
            lab[y : y + 4, x : x + 5] = 10 + k
        write_label(tmp_path / "data" / "labels" / f"{stem}.tif", lab)
    return tmp_path


def test_labels_against_themselves(labels, capsys):
    out_json = labels / "out" / "report.json"
    rc = seglab.cli.main(["evaluate", "--pred", str(labels / "data" / "labels"), "--gt", str(labels / "data"),
                          "--task", "instance", "--json", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[2:6]] == ["t1", "t2", "mean", "pooled"]
    assert all(float(v) == 1.0 for line in printed[2:6] for v in line.split()[1:])
    report = json.loads(out_json.read_text())
    assert set(report["metrics"]) >= {"aji", "aji_plus", "pq", "sq", "dq", "f1", "dice"}
    assert all(report["metrics"][k] == 1.0 for k in ("aji", "aji_plus", "pq", "sq", "dq", "f1", "dice"))
    assert [p["stem"] for p in report["per_image"]] == ["t1", "t2"]


def test_semantic_against_themselves(labels, capsys):
    rc = seglab.cli.main(["evaluate", "--pred", str(labels / "data"), "--gt", str(labels / "data"),
                          "--task", "semantic", "--num-classes", "20"])
    assert rc == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert all(float(v) == 1.0 for line in rows for v in line.split()[1:])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "depth"], "unknown task 'depth'"),
        (["--task", "instance", "--pred", "MISSING"], "MISSING: folder not found"),
    ],
)
def test_bad_input_one_line_exit_2(labels, capsys, argv, message):
    base = {"--pred": str(labels / "data"), "--gt": str(labels / "data")}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = str(labels / value) if value == "MISSING" else value
    rc = seglab.cli.main(["evaluate", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("seglab: error: ") and message in err


def test_missing_prediction_writes_nothing(labels, capsys):
    (labels / "pred").mkdir()
    out_json = labels / "report.json"
    rc = seglab.cli.main(["evaluate", "--pred", str(labels / "pred"), "--gt", str(labels / "data"),
                          "--task", "instance", "--json", str(out_json)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "t1.tif" in err and "no prediction" in err
    assert not out_json.exists()


def test_json_that_is_a_folder_or_under_a_file_is_one_line(labels, capsys):
    (labels / "afile").write_text("x")
    for target, message in ((labels / "data", "--json must be a file, but this is a folder"),
                            (labels / "afile" / "r.json", f"cannot create --json: {labels / 'afile'} is a file")):
        rc = seglab.cli.main(["evaluate", "--pred", str(labels / "data"), "--gt", str(labels / "data"),
                              "--task", "instance", "--json", str(target)])
        err = capsys.readouterr()
        assert rc == 2 and err.err.count("\n") == 1 and message in err.err and not err.out  # checked before scoring
