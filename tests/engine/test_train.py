"""train -> checkpoint -> resume -> predict -> evaluate on tiny data, through the library and the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from seglab.cli import main
from seglab.config import resolve_config
from seglab.engine.checkpoint import load_checkpoint
from seglab.engine.trainer import train


def _config(tiny, data, out, **kw):
    return resolve_config(None, {**tiny, "data": str(data), "out": str(out), **kw})


def test_train_resume_predict_round_trip(tiny, tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(_config(tiny, tiny_data, run, max_steps=3), plain_log=True)
    for name in ("best.ckpt", "last.ckpt", "config.yaml", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert list((run / "overlays").glob("*.png"))
    assert result.steps == 3 and result.best_score is not None and 0.0 <= result.best_score <= 1.0

    ckpt = load_checkpoint(run / "last.ckpt")  # weights_only=True inside
    meta = ckpt["seglab"]
    assert meta["task"] == "instance" and meta["decoder"]["name"] == "three_class_watershed"
    assert meta["model"] == {"name": "unet", "kwargs": {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}}
    assert len(meta["preprocessing"]["mean"]) == 3

    resumed = train(_config(tiny, tiny_data, run, max_steps=5), resume=True, plain_log=True)
    assert resumed.steps == 5
    after = torch.load(run / "last.ckpt", weights_only=True)
    assert after["global_step"] == 5 and after["callbacks"]  # budget state travels with it

    from seglab.inference import Predictor

    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(next((tiny_data / "images").iterdir())))
    pred = Predictor.from_checkpoint(run / "best.ckpt").predict(image)
    labels = pred["instances"]
    assert labels.shape == image.shape[:2] and labels.dtype.kind in "iu"


def test_semantic_task_infers_classes_and_tracks_miou(tiny, tiny_semantic, tmp_path):
    result = train(_config(tiny, tiny_semantic, tmp_path / "sem", task="semantic", max_steps=2), plain_log=True)
    meta = load_checkpoint(result.best_checkpoint)["seglab"]
    assert result.monitor == "val/miou"
    assert meta["model"]["kwargs"]["num_classes"] == 3 and meta["decoder"] is None


def test_cli_train_then_predict_then_evaluate(tiny_data, tmp_path, capsys):
    run, pred = tmp_path / "run", tmp_path / "pred"
    config = tmp_path / "tiny.yaml"
    config.write_text("model: unet\nmodel_kwargs: {depth: 2, base_channels: 4}\nworkers: 0\noverlays: 0\n")
    assert main(["train", "--config", str(config), "--data", str(tiny_data), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "2", "--patch", "32"]) == 0
    assert "best val/aji" in capsys.readouterr().out
    assert resolve_config(run / "config.yaml").max_steps == 2  # flags land in the saved config
    assert main(["predict", "--checkpoint", str(run / "best.ckpt"), "--input", str(tiny_data / "images"),
                 "--output", str(pred)]) == 0
    assert main(["evaluate", "--pred", str(pred), "--gt", str(tiny_data), "--task", "instance",
                 "--json", str(tmp_path / "scores.json")]) == 0
    assert (tmp_path / "scores.json").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "segformer"], "unknown model 'segformer'; valid choices: allconv"),
        (["--loss", "ce+hinge"], "unknown loss 'hinge'"),
        (["--task", "panoptic"], "invalid choice: 'panoptic'"),
    ],
)
def test_bad_choices_are_one_line(tiny_data, tmp_path, capsys, args, expected):
    status = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--max-steps", "1", *args])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("seglab: error:") and expected in err and "\n" not in err
    assert not (tmp_path / "r" / "last.ckpt").exists()


def test_missing_data_and_resume_without_checkpoint(tmp_path, tiny_data, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r2"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_ddp_two_processes_on_cpu(tiny_data, tmp_path):
    """Two gloo processes train together; rank zero writes one set of checkpoints."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "seglab", "train", "--data", str(tiny_data), "--out", str(run),
           "--max-steps", "2", "--batch-size", "2", "--patch", "32", "--workers", "0",
           "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text("model_kwargs: {depth: 2, base_channels: 4}\noverlays: 0\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(run / "last.ckpt")["global_step"] == 2


def test_kill_during_training_leaves_a_valid_last_checkpoint(tiny_data, tmp_path):
    """SIGKILL mid-run: last.ckpt still loads, and --resume goes on from its step."""
    import signal
    import time

    run = tmp_path / "killed"
    (tmp_path / "c.yaml").write_text("model_kwargs: {depth: 2, base_channels: 4}\noverlays: 0\nworkers: 0\n")
    cmd = [sys.executable, "-m", "seglab", "train", "--data", str(tiny_data), "--out", str(run),
           "--minutes", "5", "--batch-size", "2", "--patch", "32", "--config", str(tmp_path / "c.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.ckpt").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # let it train (and save) a little more
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step = load_checkpoint(run / "last.ckpt")["global_step"]
    assert step > 0
    assert main(["train", "--out", str(run), "--resume", "--max-steps", str(step + 2)]) == 0
    assert load_checkpoint(run / "last.ckpt")["global_step"] == step + 2


@pytest.mark.parametrize("method", ["embedding", "seeds", "recurrent"])
def test_embedding_routes_train_and_predict(tiny, tiny_data, tmp_path, method):
    from seglab.inference import Predictor

    result = train(_config(tiny, tiny_data, tmp_path / method, method=method, max_steps=2, embedding_dim=4), plain_log=True)
    meta = load_checkpoint(result.best_checkpoint)["seglab"]
    assert meta["method"] == method and meta["model"]["kwargs"]["aux_heads"]["embedding"] == 4
    image = np.zeros((40, 40, 3), np.uint8) + 200
    labels = Predictor.from_checkpoint(result.best_checkpoint).predict(image)["instances"]
    assert labels.shape == (40, 40)


def test_maskrcnn_trains_and_predicts_through_the_same_commands(tiny_data, tmp_path):
    run, pred = tmp_path / "mrcnn", tmp_path / "pred"
    (tmp_path / "m.yaml").write_text(
        "model: maskrcnn\nmodel_kwargs: {backbone: resnet18_fpn, rois_per_image: 32, representation_size: 32, mask_channels: 8}\n"
        "workers: 0\noverlays: 1\n"
    )
    assert main(["train", "--config", str(tmp_path / "m.yaml"), "--data", str(tiny_data), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "2", "--patch", "32"]) == 0
    meta = load_checkpoint(run / "best.ckpt")["seglab"]
    assert meta["method"] == "maskrcnn" and meta["model"]["name"] == "maskrcnn"
    assert main(["predict", "--checkpoint", str(run / "best.ckpt"), "--input", str(tiny_data / "images"),
                 "--output", str(pred), "--tile", "32"]) == 0
    assert len(list(pred.glob("*_instances.tif"))) == 5
