"""A tiny trained checkpoint for the export and serve tests: a U-Net fitted for a few seconds.

An untrained network predicts one blob, so "same instance map" would prove little; 150 Adam
steps on synthetic 64 x 64 tiles give a model that separates nuclei (AJI around 0.5+).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seglab.data.synthetic import synth_tile
from seglab.data.targets import three_class_targets
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 8}
PRE = {"in_channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
CLASSES = ["background", "interior", "boundary"]


def tiny_meta(model_name: str = "unet", kwargs: dict | None = None, **extra) -> dict:
    meta = make_meta(
        task="instance", method="three_class", model_name=model_name, model_kwargs=kwargs or KW, preprocessing=PRE,
        decoder={"name": "three_class_watershed", "kwargs": {"min_size": 4}}, classes=CLASSES, patch_size=64,
    )
    meta.update(extra)
    return meta


def tiles(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic tiles, normalised as ``PRE`` says, and their three-class targets."""
    images, targets = [], []
    for i in range(n):
        image, inst = synth_tile(size, seed=seed + i)
        images.append((image.astype(np.float32) / 255 - 0.5) / 0.25)
        targets.append(three_class_targets(inst))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.stack(targets).astype(np.int64))


def train_tiny_checkpoint(path: Path, steps: int = 150) -> Path:
    """Fit the tiny U-Net on 16 synthetic tiles and save it as a seglab checkpoint."""
    torch.manual_seed(0)
    model = create_model("unet", **KW)
    x, y = tiles(16)
    weight = torch.tensor([1.0, 1.0, 3.0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        idx = torch.arange(step * 4, step * 4 + 4) % len(x)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_checkpoint(path, model.eval(), tiny_meta())
    return path


def shared_tiny_checkpoint(tmp_path_factory) -> Path:
    """One trained tiny checkpoint per test session, shared by the export and serve tests."""
    path = tmp_path_factory.getbasetemp() / "tiny-shared" / "tiny.ckpt"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        train_tiny_checkpoint(path)
    return path
