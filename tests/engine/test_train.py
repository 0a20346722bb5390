"""train -> checkpoint -> resume -> predict -> evaluate on tiny data, through the library and the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from seglab.cli import main
from seglab.config import resolve_config
from seglab.engine.trainer import train
from seglab.spec.checkpoint import load_checkpoint


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
        (["--task", "depth"], "invalid choice: 'depth'"),
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


def _four_discs(size=48, radius=6):
    """An H&E-like tile with four separated discs of different colours, and its instance map."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    image = np.full((size, size, 3), 225, np.uint8)
    colours = [(110, 60, 150), (160, 40, 60), (40, 120, 90), (60, 60, 60)]
    for i, ((cy, cx), colour) in enumerate(zip([(12, 12), (12, 35), (35, 13), (34, 35)], colours, strict=True), 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
        image[labels == i] = colour
    return image, labels


# method: (embedding_dim, lr, AJI the embeddings reach alone, i.e. without splitting clusters into
# connected parts). The recurrent route spreads its unit vectors slowly from a near-collapsed start:
# 3 of the 4 discs apart after 40 steps (its pair loss 0.145 -> 0.033).
EMBEDDING_ROUTES = {"embedding": (4, 0.01, 0.9), "seeds": (4, 0.01, 0.9), "recurrent": (32, 0.02, 0.5)}


@pytest.mark.parametrize("method", list(EMBEDDING_ROUTES))
def test_embedding_routes_learn_to_separate_four_discs(tiny, tmp_path, method):
    """40 steps on a tile of four discs: the route's embedding loss falls by half or more, the
    checkpoint's decoder finds the four discs, and so do the embeddings alone (spatial routes:
    disc centres, coordinates added, more than delta_d = 1.5 apart)."""
    import csv

    from seglab.data.io import write_image, write_label
    from seglab.inference import Predictor
    from seglab.instances import decode
    from seglab.instances.embedding import with_coordinates
    from seglab.metrics import aji

    dim, lr, bar = EMBEDDING_ROUTES[method]
    image, labels = _four_discs()
    for stem in ("a", "b"):
        write_image(tmp_path / "data" / "images" / f"{stem}.png", image)
        write_label(tmp_path / "data" / "labels" / f"{stem}.tif", labels)
    data = tmp_path / "data"
    # 2 images x 4 patches, 4 per batch: 2 steps per epoch; validated once, at the end (best = last)
    config = _config(tiny, data, tmp_path / method, val=str(data), method=method, embedding_dim=dim, lr=lr,
                     max_steps=40, val_every=20, patch=48, patches_per_image=4, batch_size=4,
                     model_kwargs={"depth": 2, "base_channels": 8}, augment="none", overlays=0, calibrate=False)
    result = train(config, plain_log=True)
    assert result.steps == 40
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    losses = [float(r["train/embedding_loss_epoch"]) for r in rows if r.get("train/embedding_loss_epoch")]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0], losses

    meta = load_checkpoint(result.best_checkpoint)["seglab"]
    assert meta["method"] == method and meta["model"]["kwargs"]["aux_heads"]["embedding"] == dim
    out = Predictor.from_checkpoint(result.best_checkpoint).predict(image)
    assert aji(labels, out["instances"]) >= 0.9
    decoder = meta["decoder"]
    alone = decode(decoder["name"], out["probs"], **{**decoder["kwargs"], "split_components": False})
    assert aji(labels, alone) >= bar
    if method != "recurrent":
        emb = with_coordinates(torch.from_numpy(out["probs"][-dim:]), decoder["kwargs"]["coord_unit"])
        centres = torch.stack([emb[:, torch.from_numpy(labels == i)].mean(1) for i in range(1, 5)])
        assert torch.pdist(centres).min() > 1.5


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
