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


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
        (["--lr", "-1"], "--lr: must be a finite number > 0, got -1.0"),
        (["--seed", "-1"], "--seed: must lie in [0, 2**32 - 1], got -1"),
    ],
)
def test_bad_flags_are_one_line_and_write_nothing(trained, data, tmp_path, capsys, extra, expected):
    run = tmp_path / "run"
    assert seglab.cli.main(["train", "--data", str(data), "--out", str(run), "--max-steps", "1", *extra]) == 2
    assert expected in _one_error_line(capsys)
    assert not trained and not run.exists()


def test_bad_yaml_value_names_the_yaml_file(trained, data, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("lr: .nan\nweight_decay: 0.01\n")
    assert seglab.cli.main(["train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    assert _one_error_line(capsys) == f"seglab: error: {cfg}: lr: must be a finite number > 0, got nan"
    cfg.write_text("weight_decay: -1\n")
    assert seglab.cli.main(["train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "r"), "--lr", "0.01"]) == 2
    assert _one_error_line(capsys).startswith(f"seglab: error: {cfg}: weight_decay: must be a finite number >= 0")
    assert not trained


def test_out_that_is_a_file_is_one_line(trained, data, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, expected in ((afile, f"{afile}: --out must be a folder, but this is a file"),
                          (afile / "run", f"{afile / 'run'}: cannot create --out: {afile} is a file")):
        assert seglab.cli.main(["train", "--data", str(data), "--out", str(out), "--max-steps", "1"]) == 2
        assert expected in _one_error_line(capsys)
    assert not trained and afile.read_text() == "not a folder"


def test_gpu_accelerator_without_gpu_is_one_line(trained, data, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--max-steps", "1"]
    assert seglab.cli.main([*argv, "--accelerator", "cuda"]) == 2
    assert "--accelerator: 'cuda' asked for, but this machine has no such GPU" in _one_error_line(capsys)
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text("accelerator: gpu\n")
    assert seglab.cli.main([*argv, "--config", str(cfg)]) == 2
    assert f"{cfg}: accelerator: 'gpu' asked for" in _one_error_line(capsys)
    assert not trained


def test_one_budget_flag_wins_over_the_yaml_budget(trained, data, tmp_path, capsys):
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r")]
    assert seglab.cli.main([*argv, "--minutes", "1", "--max-steps", "5"]) == 2
    assert "argument --max-steps: not allowed with argument --minutes" in _one_error_line(capsys)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("minutes: 5\n")
    assert seglab.cli.main([*argv, "--config", str(cfg), "--max-steps", "3"]) == 0
    config = trained[-1][0]
    assert (config.minutes, config.epochs, config.max_steps) == (None, None, 3)
    cfg.write_text("minutes: 5\nepochs: 2\n")
    assert seglab.cli.main([*argv, "--config", str(cfg)]) == 2
    assert f"{cfg}: give one budget (minutes, epochs or max_steps), got minutes and epochs" in _one_error_line(capsys)
    assert len(trained) == 1
