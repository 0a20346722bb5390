"""Theoretical receptive field, traced through the model's real operator graph.

Every tensor derived from the input carries ``(rf, jump)`` per axis: ``rf`` is the size of the
input window one of its pixels can see, ``jump`` the input-pixel distance between neighbouring
pixels (Araujo et al. 2019, "Computing receptive fields of convolutional neural networks").
A ``TorchDispatchMode`` sees every aten op of one forward pass (on the ``meta`` device, so no
memory or time is spent) and updates the pair:

* convolution / pooling with kernel ``k``, stride ``s``, dilation ``d``:
  ``rf += (k - 1) * d * jump; jump *= s``;
* transposed convolution: ``jump /= s; rf += (ceil(((k - 1) * d + 1) / s) - 1) * jump_in``;
* up-sampling to a larger size: ``jump *= in / out`` (bilinear also adds one input step to rf);
* global pooling (mean over H and W, adaptive pooling to 1x1): the window becomes global;
* any other op (add, concat, BN, ReLU, pad, crop, ...): the maximum over its inputs.

The trace runs inside ``seglab.models.blocks.reference_ops()``: exact fast paths that shuffle
pixels through reshapes (the U-Net decoder's fused up-sample + conv) compute the textbook way.

Because the pair flows along the data, parallel branches (ASPP, skips) take the maximum of
their paths, where walking the layers in execution order would wrongly add them up.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

from seglab.models.fastpaths import reference_ops

Info = tuple[float, float, float, float]  # rf_h, rf_w, jump_h, jump_w
INF = math.inf


@dataclass(frozen=True)
class ReceptiveField:
    """Theoretical receptive field of one output pixel, in input pixels (``inf`` = global)."""

    height: float
    width: float

    @property
    def is_global(self) -> bool:
        return math.isinf(self.height) or math.isinf(self.width)

    def __str__(self) -> str:
        if self.is_global:
            return "global (image-level pooling)"
        return f"{int(self.height)} x {int(self.width)} px"


def _pair(v, default=None) -> tuple[int, int]:
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        v = default
    if isinstance(v, int):
        return v, v
    return (int(v[0]), int(v[-1]))


def _name(func) -> str:
    return func.overloadpacket.__name__


def _windowed(info: Info, kernel, stride, dilation) -> Info:
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    rh, rw, jh, jw = info
    return rh + (kh - 1) * dh * jh, rw + (kw - 1) * dw * jw, jh * sh, jw * sw


def _rule(func, args, kwargs, info: Info, out) -> Info:
    name = _name(func)
    if name == "convolution":
        weight, stride, dilation, transposed = args[1], args[3], args[5], args[6]
        kernel = tuple(weight.shape[-2:])
        if not transposed:
            return _windowed(info, kernel, _pair(stride), _pair(dilation))
        (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
        rh, rw, jh, jw = info
        grow_h = math.ceil(((kernel[0] - 1) * dh + 1) / sh) - 1
        grow_w = math.ceil(((kernel[1] - 1) * dw + 1) / sw) - 1
        return rh + grow_h * jh, rw + grow_w * jw, jh / sh, jw / sw
    if name in ("max_pool2d_with_indices", "max_pool2d", "avg_pool2d"):
        kernel = _pair(args[1])
        stride = _pair(args[2] if len(args) > 2 else None, kernel)
        dilation = _pair(args[4] if name != "avg_pool2d" and len(args) > 4 else 1)
        return _windowed(info, kernel, stride, dilation)
    if name.startswith("upsample_") or name == "max_unpool2d":
        out_t = tree_leaves(out)[0]
        in_h, in_w = args[0].shape[-2:]
        out_h, out_w = out_t.shape[-2:]
        rh, rw, jh, jw = info
        taps = 1 if "linear" in name else 0
        return rh + taps * jh, rw + taps * jw, jh * in_h / out_h, jw * in_w / out_w
    if name in ("mean", "sum", "amax") and args[0].dim() == 4:
        dims = args[1] if len(args) > 1 else list(range(4))
        dims = {d % 4 for d in dims}
        if {2, 3} <= dims:
            return INF, INF, info[2], info[3]
    if name in ("_adaptive_avg_pool2d", "adaptive_max_pool2d") and tuple(args[1]) == (1, 1):
        return INF, INF, info[2], info[3]
    return info


_LAYER_OPS = ("convolution", "max_pool2d_with_indices", "max_pool2d", "avg_pool2d")


class _ReceptiveFieldMode(TorchDispatchMode):
    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.info: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        self.info[x] = (1.0, 1.0, 1.0, 1.0)
        self.layers: list[tuple[str, float]] = []  # (op, rf height) after every conv / pool, in order

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tracked = [self.info[t] for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t in self.info]
        if not tracked:
            return out
        merged = (
            max(i[0] for i in tracked), max(i[1] for i in tracked),
            min(i[2] for i in tracked), min(i[3] for i in tracked),
        )
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        base = self.info.get(first, merged) if first is not None else merged
        new = _rule(func, args, kwargs, base, out)
        new = (max(new[0], merged[0]), max(new[1], merged[1]), new[2], new[3])
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.info[t] = new
        if _name(func) in _LAYER_OPS:
            self.layers.append((_name(func), new[0]))
        return out


def _trace(model: torch.nn.Module | str, in_channels: int, size: int | tuple[int, int], model_kwargs) -> _ReceptiveFieldMode:
    if isinstance(model, str):
        from seglab.models import create_model

        with torch.device("meta"):
            model = create_model(model, in_channels=in_channels, num_classes=2, **model_kwargs)
    else:
        model = copy.deepcopy(model).to("meta")
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.zeros(1, in_channels, h, w, device="meta")
    model.eval()
    with torch.no_grad(), reference_ops(), _ReceptiveFieldMode(x) as mode:
        out = model(x)
        if isinstance(out, dict):
            out = out["logits"]
        mode.output_info = mode.info[out]
    return mode


def receptive_field_per_layer(
    model: torch.nn.Module | str, *, in_channels: int = 3, size: int | tuple[int, int] = 256, **model_kwargs
) -> list[tuple[str, float]]:
    """Theoretical receptive-field height after every convolution and pooling, in execution order.

    Args: as :func:`receptive_field`.
    Returns:
        ``[(op name, rf in input pixels), ...]``: ``"convolution"`` (plain or transposed, the 1x1
        head included) or a pooling op; ``inf`` once image pooling made the window global.
    """
    return list(_trace(model, in_channels, size, model_kwargs).layers)


def receptive_field(
    model: torch.nn.Module | str, *, in_channels: int = 3, size: int | tuple[int, int] = 256, **model_kwargs
) -> ReceptiveField:
    """Theoretical receptive field of the model's main output (``"logits"`` for dict outputs).

    Args:
        model: an ``nn.Module`` taking ``N x in_channels x H x W``, or a ``seglab.models`` name
            (built with ``num_classes=2`` and ``model_kwargs``).
        in_channels: input channels.
        size: input size used for the trace (``H`` or ``(H, W)``); large enough for every stride.
    Returns:
        The window size (height, width) in input pixels; ``inf`` when image pooling makes it global.
    """
    rh, rw, _, _ = _trace(model, in_channels, size, model_kwargs).output_info
    return ReceptiveField(rh, rw)
