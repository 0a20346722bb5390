"""Effective receptive field: how much each input pixel moves one output pixel.

Luo et al. 2016 ("Understanding the effective receptive field in deep convolutional neural
networks") back-propagate a gradient of 1 at the centre pixel of the output (every channel) to
the input, and average the absolute input gradient over random inputs. The map is roughly
Gaussian: it fills only a fraction of the theoretical window, and that fraction shrinks as
``1 / sqrt(depth)`` for a plain conv stack.

``effective_rf_size`` summarises the map by the side of the smallest centred square holding a
given share (95% by default) of the gradient's absolute mass.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


def effective_receptive_field(
    model: torch.nn.Module, *, in_channels: int = 3, size: int = 128, samples: int = 4, seed: int = 0
) -> np.ndarray:
    """Mean absolute input gradient of the centre output pixel, ``size x size`` (sums to 1).

    Args:
        model: module taking ``N x in_channels x size x size`` (a copy is run in eval mode; dict
            outputs use ``"logits"``); the output may be smaller than the input (strided nets):
            its centre pixel is used.
        in_channels: input channels.
        size: input side; should exceed the theoretical receptive field.
        samples: random inputs (uniform in [0, 1)) to average over.
        seed: seed of those inputs.
    """
    net = copy.deepcopy(model).cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(samples, in_channels, size, size, generator=generator, requires_grad=True)
    out = net(x)
    if isinstance(out, dict):
        out = out["logits"]
    h, w = out.shape[-2:]
    out[:, :, h // 2, w // 2].sum().backward()
    grad = x.grad.abs().sum(dim=(0, 1)).double().numpy()
    total = grad.sum()
    return grad / total if total > 0 else grad


def effective_rf_size(grad_map: np.ndarray, mass: float = 0.95) -> int:
    """Side of the smallest square around the map's centre of mass holding ``mass`` of it.

    Args:
        grad_map: non-negative ``H x W`` map (e.g. from :func:`effective_receptive_field`).
        mass: share of the total in (0, 1].
    Returns:
        An odd side length in pixels (1 when the map is concentrated on one pixel, 0 when empty).
    """
    total = float(grad_map.sum())
    if total <= 0:
        return 0
    h, w = grad_map.shape
    ys, xs = np.indices(grad_map.shape)
    cy = int(round(float((ys * grad_map).sum() / total)))
    cx = int(round(float((xs * grad_map).sum() / total)))
    # Chebyshev distance from the centre: the square of half-side r holds every pixel with d <= r.
    dist = np.maximum(np.abs(ys - cy), np.abs(xs - cx))
    per_ring = np.bincount(dist.ravel(), weights=grad_map.ravel())
    radius = int(np.searchsorted(np.cumsum(per_ring), mass * total - 1e-12 * total))
    return min(2 * radius + 1, max(h, w) if max(h, w) % 2 else max(h, w) + 1)
