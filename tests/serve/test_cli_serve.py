"""``seglab serve`` refuses what it cannot serve before it listens: one line, exit 2."""

import torch
from tiny_model import KW, tiny_meta

from seglab.cli import main
from seglab.models import create_model
from seglab.spec.checkpoint import save_checkpoint


def test_checkpoint_that_does_not_export_is_one_line(tmp_path, capsys):
    path = tmp_path / "scaled.ckpt"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("unet", input_scale=0.5, **KW), tiny_meta("unet", {**KW, "input_scale": 0.5}))
    assert main(["serve", "--checkpoint", str(path), "--backend", "onnxruntime", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seglab: error: ") and "input_scale 0.5" in err


def test_bad_limits_are_one_line(tmp_path, capsys):
    assert main(["serve", "--checkpoint", str(tmp_path / "x.ckpt"), "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err
