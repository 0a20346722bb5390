"""Plain PyTorch training loops and test scoring for ``bench_train_vs_smp.py``.

No Lightning and nothing of ``seglab.engine``: a loop here is ``for batch in loader: forward,
loss, backward, clip, step``, with the learning rate set from the share of the time budget used.
What the loops take from seglab is data and scoring only, so that both sides of a comparison read
the same pixels and are judged alike: :class:`seglab.data.dataset.SegmentationDataset` (patches,
3-class targets, augmentation, intensity scaling), the 3-class watershed decoder and
:class:`seglab.metrics.InstanceMetrics`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DECODER = "three_class_watershed"
# smp's encoders are normalised with the ImageNet statistics of their pretrained weights
# (smp.encoders.get_preprocessing_params, which fetches them from the Hugging Face hub); one
# channel gets the mean over the three
IMAGENET_GRAY = ([float(np.mean((0.485, 0.456, 0.406)))], [float(np.mean((0.229, 0.224, 0.225)))])


@dataclass
class Pipeline:
    """How an image reaches a network: stored values -> [0, 1] (``intensity``, a seglab
    checkpoint's ``preprocessing["intensity"]`` block), then ``(x - mean) / std`` per channel."""

    intensity: dict[str, Any]
    mean: list[float]
    std: list[float]

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> Pipeline:
        return cls(dict(pre.get("intensity") or {"mode": "dtype"}), list(pre["mean"]), list(pre["std"]))

    def scaling(self):
        from seglab.data.normalize import IntensityScaling

        return IntensityScaling.from_preprocessing({"intensity": self.intensity})

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std


def patch_dataset(samples, pipeline: Pipeline, *, channels: int, patch: int, per_image: int, seed: int):
    """Random training patches with the 3-class target and seglab's ``default`` augmentation."""
    from seglab.data.dataset import SegmentationDataset
    from seglab.data.transforms import build_transforms

    return SegmentationDataset(
        samples, task="instance", targets=("three_class",), patch_size=patch, patches_per_image=per_image,
        transform=build_transforms("default", channels=channels, modality="fluorescence"),
        intensity=pipeline.scaling(), seed=seed,
    )


def image_dataset(samples, pipeline: Pipeline):
    """Whole images (scaled to [0, 1], not normalised) with their instance maps."""
    from seglab.data.dataset import SegmentationDataset

    return SegmentationDataset(samples, task="instance", targets=("three_class",), patch_size=None,
                               intensity=pipeline.scaling())


def _logits(model: torch.nn.Module, x: torch.Tensor, pad: int) -> torch.Tensor:
    """Logits at the input's size; ``pad`` > 1 reflects the input up to a multiple of it first."""
    h, w = x.shape[-2:]
    if pad > 1 and (h % pad or w % pad):
        x = torch.nn.functional.pad(x, (0, -w % pad, 0, -h % pad), mode="reflect")
    out = model(x.contiguous(memory_format=torch.channels_last))
    out = out["logits"] if isinstance(out, dict) else out
    return out[..., :h, :w]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images, pipeline: Pipeline, decoder_kwargs: dict[str, Any], *, pad: int = 1) -> dict[str, float]:
    """Whole-image forward, softmax, 3-class watershed with ``decoder_kwargs``; AJI and PQ as the
    mean over images (PQ matches IoU > 0.5)."""
    from seglab.instances import decode
    from seglab.metrics import InstanceMetrics

    was_training = model.training
    model.eval()
    acc = InstanceMetrics()
    for i in range(len(images)):
        item = images[i]
        x = pipeline.normalise(item["image"])[None]
        probs = _logits(model, x, pad).float().softmax(1)[0].numpy()
        acc.update(item["instances"].numpy(), decode(DECODER, probs, **decoder_kwargs))
    model.train(was_training)
    mean = acc.compute()["mean"]
    return {"aji": float(mean["aji"]), "pq": float(mean["pq"])}


# ------------------------------------------------------------------------------------ schedules
def warmup_cosine(progress: float, *, warmup: float = 0.05) -> float:
    """Peak-rate multiplier: linear warm-up from 0.1 over ``warmup`` of the budget, then cosine to
    0.02 (the formula of seglab's ``schedule: onecycle``, written out here)."""
    t = min(max(progress, 0.0), 1.0)
    if t < warmup:
        return 0.1 + 0.9 * t / warmup
    t = (t - warmup) / (1.0 - warmup)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))


def cosine_to(floor: float) -> Callable[[float], float]:
    """``CosineAnnealingLR(T_max = the whole run, eta_min = floor x lr)`` as a multiplier of progress."""
    return lambda t: floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def adamw_no_decay_on_norms(model: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, weight decay on weights of 2+ dimensions only (biases and norms: none)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr)


# ----------------------------------------------------------------------------------------- loop
@dataclass
class LoopResult:
    steps: int
    epochs: int
    images_per_second: float  # training images per second over the last epoch (as seglab reports it)
    best_epoch: int | None  # epoch whose weights were kept (None: the last weights)
    val_scores: list[float]


def train_loop(
    model: torch.nn.Module, dataset, pipeline: Pipeline, *, minutes: float, optimizer: torch.optim.Optimizer,
    lr_factor: Callable[[float], float], loss_fn: Callable, grad_clip: float | None = None,
    batch_size: int = 8, workers: int = 1, seed: int = 0, pad: int = 1,
    validate: Callable[[torch.nn.Module], float] | None = None,
) -> LoopResult:
    """Train until ``minutes`` of wall clock are used (validation included), then keep the weights
    of the best ``validate`` score (run after every epoch and once at the end, strictly better
    wins), or the last weights when ``validate`` is None.

    Like seglab's budget, training stops when the time used plus the last validation's duration
    reaches the budget, so the final validation ends near it. ``lr_factor(share of the budget
    used)`` multiplies every group's initial rate before each step. Torch threads: the cores
    minus the DataLoader workers (seglab's rule on CPU).
    """
    from torch.utils.data import DataLoader

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - workers))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))
    base = [group["lr"] for group in optimizer.param_groups]
    budget = 60.0 * minutes
    best, best_state, best_epoch, scores = -math.inf, None, None, []
    steps = epochs = 0
    val_seconds, ips, done = 0.0, 0.0, False
    model.train()
    start = time.monotonic()
    while not done:
        images, t0 = 0, time.monotonic()
        for batch in loader:
            factor = lr_factor((time.monotonic() - start) / budget)
            for group, lr in zip(optimizer.param_groups, base, strict=True):
                group["lr"] = lr * factor
            loss = loss_fn(_logits(model, pipeline.normalise(batch["image"]), pad), batch["three_class"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            steps, images = steps + 1, images + len(batch["image"])
            ips = images / (time.monotonic() - t0)
            if time.monotonic() - start + val_seconds >= budget:
                done = True
                break
        epochs += 1
        if validate is not None:
            t1 = time.monotonic()
            score = validate(model)
            val_seconds = time.monotonic() - t1
            scores.append(score)
            if score > best:
                best, best_epoch = score, epochs
                best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return LoopResult(steps, epochs, ips, best_epoch, scores)
