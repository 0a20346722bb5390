"""The small, shared training loop of the experiments, and their data.

Every experiment that trains uses :func:`fit`: Adam, a fixed number of steps, a fixed seed, one
batch drawn per step from a pool of tiles (random flips and 90-degree turns), so that two arms
differ only in what the experiment varies. The data are the built-in synthetic H&E nuclei
(:func:`seglab.data.synthetic.synth_tile`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Tiles:
    """Images ``N x 3 x H x W`` (float, about zero mean, unit spread) and instance maps ``N x H x W``."""

    images: torch.Tensor
    instances: np.ndarray

    @property
    def foreground(self) -> torch.Tensor:
        return torch.from_numpy((self.instances > 0).astype(np.int64))


def nuclei_tiles(n: int, size: int, *, seed: int) -> Tiles:
    """``n`` synthetic H&E nuclei tiles of ``size`` px (tile ``i`` drawn with seed ``seed + i``)."""
    from seglab.data.synthetic import synth_tile

    images, instances = [], []
    for i in range(n):
        image, inst = synth_tile(size, seed=seed + i)
        images.append(image)
        instances.append(inst)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return Tiles(images=(x - 0.5) / 0.25, instances=np.stack(instances))


def augmented_batch(images: torch.Tensor, targets: torch.Tensor, batch: int, generator: torch.Generator):
    """``batch`` random tiles, each flipped and turned at random (same for image and target)."""
    idx = torch.randint(len(images), (batch,), generator=generator)
    xs, ys = [], []
    for i in idx.tolist():
        x, y = images[i], targets[i]
        k = int(torch.randint(4, (1,), generator=generator))
        x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
        if bool(torch.randint(2, (1,), generator=generator)):
            x, y = x.flip(-1), y.flip(-1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def fit(
    model: nn.Module, loss_fn: Callable, images: torch.Tensor, targets: torch.Tensor, *, steps: int, batch: int,
    lr: float = 1e-3, seed: int = 0, evaluate: Callable[[nn.Module], dict] | None = None, every: int = 0,
) -> list[dict]:
    """Train ``model`` in place for ``steps`` Adam steps; return the learning curve.

    Args:
        model: the network (``logits = model(x)``).
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        images: ``N x C x H x W`` training pool.
        targets: ``N x H x W`` (or ``N x 1 x H x W``) targets aligned with ``images``.
        steps: optimiser steps.
        batch: tiles per step.
        lr: Adam's learning rate.
        seed: seed of the batch draws.
        evaluate: called in eval mode every ``every`` steps and after the last; its dict joins the row.
        every: evaluation period (0: only after the last step).
    Returns:
        ``[{"step", "loss", **evaluate(model)}, ...]`` at each evaluation.
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    curve, recent = [], []
    for step in range(1, steps + 1):
        model.train()
        x, y = augmented_batch(images, targets, batch, generator)
        loss = loss_fn(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        recent.append(loss.item())
        if step == steps or (every and step % every == 0):
            row = {"step": step, "loss": float(np.mean(recent))}
            recent = []
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    row.update(evaluate(model))
            curve.append(row)
    model.eval()
    return curve
