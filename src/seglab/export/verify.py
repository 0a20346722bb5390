"""Parity of an exported file with the eager model: the largest absolute difference of any output.

Inputs are random images at sizes that are multiples of the stride, other than the trace example
(so a frozen size would show), in a batch of two; every export is checked this way before
:func:`seglab.export.export_checkpoint` returns.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from seglab.export.graph import stride
from seglab.export.runtime import load_runner

TOLERANCE = 1e-4  # fp32 exports: largest absolute difference of any output from eager PyTorch


def eager_outputs(model: nn.Module, x: torch.Tensor, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """``model(x)`` as a tuple in ``names`` order."""
    with torch.no_grad():
        out = model.eval()(x)
    return (out,) if isinstance(out, torch.Tensor) else tuple(out[n] for n in names)


def parity_inputs(model: nn.Module, in_channels: int, seed: int = 0) -> list[torch.Tensor]:
    """Two random batches: ``2 x C x 3s x 5s``-ish and ``1 x C x 5s x 2s``-ish (``s`` the stride, >= 40 px)."""
    s = stride(model)
    g = torch.Generator().manual_seed(seed)
    side = lambda n: max(n * s, -(-40 // s) * s)  # noqa: E731
    return [torch.randn(2, in_channels, side(3), side(5), generator=g), torch.randn(1, in_channels, side(5), side(2), generator=g)]


def max_difference(model: nn.Module, model_file: str | os.PathLike[str], inputs: list[torch.Tensor], names: tuple[str, ...]) -> float:
    """The largest absolute difference between the exported file's and eager outputs on ``inputs``."""
    runner = load_runner(model_file)
    worst = 0.0
    for x in inputs:
        ref = eager_outputs(model, x, names)
        got = runner(x)
        for r, o in zip(ref, got, strict=True):
            if r.shape != o.shape:
                return float("inf")
            worst = max(worst, float((r.float() - o.float()).abs().max()))
    return worst


def detection_difference(model: nn.Module, model_file: str | os.PathLike[str], image: torch.Tensor) -> float:
    """Mask R-CNN: largest difference of boxes, scores and masks for one ``C x H x W`` image."""
    from seglab.export.onnx import DETECTION_OUTPUTS

    with torch.no_grad():
        ref = model.eval()([image])[0]
    runner = load_runner(model_file)
    if str(model_file).endswith(".onnx"):
        got = dict(zip(DETECTION_OUTPUTS, runner(image), strict=True))
    else:
        got = runner.module([image])[1][0]
    worst = 0.0
    for key in ("boxes", "scores", "masks"):
        if ref[key].shape != got[key].shape:
            return float("inf")
        if ref[key].numel():
            worst = max(worst, float((ref[key].float() - got[key].float()).abs().max()))
    return worst
