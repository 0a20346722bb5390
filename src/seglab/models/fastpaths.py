"""Exact fast paths: the same functions as the textbook layers, computed with less work.

Each path gives the result of its plain counterpart (tested value by value and gradient by
gradient) and keeps the same parameters and state_dict, so checkpoints do not care which ran.

``upsample_concat_conv3x3``
    the U-Net decoder's "nearest x2, concatenate the skip, 3x3 conv" at the coarse resolution
    (its four output phases interleaved by ``_PhaseInterleave``).
``PointwiseConv``
    a 1x1 ``nn.Conv2d`` that runs oneDNN (forward and backward) for channels_last CPU tensors.
``DepthwiseConv``
    a depthwise ``nn.Conv2d`` that, when its dilation reaches past the feature map (DeepLab's
    ASPP at rate 18 on a 16 x 16 map), is the per-channel scaling by the centre tap it computes.
``bilinear_resize``
    ``F.interpolate(bilinear)`` whose backward gets its gradient in channels_last (a gradient
    sliced out of a concatenation otherwise sends it to the 10x slower NCHW kernel).
``onednn_layout`` / ``layout_like``
    the channels_last copy of an NCHW CPU tensor, for layers that run several times faster in
    it, and the way back to NCHW for a model's outputs.

``reference_ops()`` turns them off (the receptive-field tracer needs the textbook graph);
they are also off while tracing, exporting or compiling, where the plain ops are portable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_FAST_PATHS = [True]


def fast_paths_enabled() -> bool:
    """Whether modules may use exact re-arrangements such as ``upsample_concat_conv3x3``."""
    return _FAST_PATHS[0]


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Within this block, modules compute the textbook way (up-sample, concatenate, convolve).

    The receptive-field tracer uses it: the fast paths give the same function (tested) but
    rearrange pixels with reshapes that carry no notion of input position.
    """
    previous = _FAST_PATHS[0]
    _FAST_PATHS[0] = False
    try:
        yield
    finally:
        _FAST_PATHS[0] = previous


def _eager_fast(x: torch.Tensor) -> bool:
    """Fast paths on, a 4-d tensor, not being traced, exported or compiled."""
    return (
        _FAST_PATHS[0]
        and x.dim() == 4
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
    )


def _cpu_float(x: torch.Tensor) -> bool:
    """CPU float32 with oneDNN available."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def is_channels_last(x: torch.Tensor) -> bool:
    """``x`` is laid out channels_last and not (also) plain contiguous."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _onednn_ok(x: torch.Tensor) -> bool:
    """CPU float32 channels_last eager input, not being traced, exported or compiled."""
    return _eager_fast(x) and _cpu_float(x) and x.is_contiguous(memory_format=torch.channels_last)


def onednn_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels_last if it is an NCHW CPU float32 eager tensor, else ``x`` itself.

    On CPU, oneDNN's depthwise convolutions and PyTorch's bilinear resize run 3-20x slower on
    NCHW tensors than on channels_last ones (8 x 256 x 64 x 64, one thread); the copy costs
    about as much as one elementwise op. Values are unchanged, only the strides.
    """
    if _eager_fast(x) and _cpu_float(x) and not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def layout_like(out: torch.Tensor | dict, like: torch.Tensor) -> torch.Tensor | dict:
    """``out`` (or each tensor of a dict) back in NCHW if it is channels_last and ``like`` is not.

    Undoes ``onednn_layout`` at a model's output, so that outputs keep the input's layout.
    """
    if isinstance(out, dict):
        return {k: layout_like(v, like) for k, v in out.items()}
    if isinstance(out, torch.Tensor) and is_channels_last(out) and not is_channels_last(like):
        return out.contiguous()
    return out


class PointwiseConv(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state_dict) that runs oneDNN on channels_last CPU input.

    With one thread and a batch under 16, PyTorch sends an unstrided 1x1 convolution, forward
    and backward, to a generic GEMM path; for channels_last float32 tensors on CPU oneDNN's own
    convolution is 1.7-2.3x faster both ways (measured for 256-1280 channels at 16 x 16 and
    64 x 64). Dilation changes nothing for a 1x1 kernel (its only tap sits at offset 0), but a
    dilated convolution is one PyTorch always gives to oneDNN, in the backward pass too; so that
    is how the fast path calls it. Everywhere else (NCHW, GPU, tracing, export) it is a plain
    ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_ok(x):
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 2)
        return super().forward(x)

    @classmethod
    def replace_in(cls, module: nn.Module) -> None:
        """Swap every plain 1x1 ``nn.Conv2d`` inside ``module`` for a ``PointwiseConv`` (weights kept)."""
        for name, child in module.named_children():
            plain = type(child) is nn.Conv2d and child.kernel_size == (1, 1) and child.groups == 1
            if plain and child.padding == (0, 0) and child.dilation == (1, 1):
                new = cls(child.in_channels, child.out_channels, bias=child.bias is not None, stride=child.stride[0])
                new.load_state_dict(child.state_dict())
                setattr(module, name, new)
            else:
                cls.replace_in(child)


class DepthwiseConv(nn.Conv2d):
    """A depthwise ``k x k`` ``nn.Conv2d`` (same parameters and state_dict, no bias) keeping the size.

    Dilated by ``d`` with padding ``d * (k - 1) / 2``, every tap but the centre one reads
    ``d`` or more pixels away; once ``d`` reaches the height and the width of the input, those
    taps only ever read the zero padding, and the convolution is exactly the per-channel
    scaling by the centre tap. DeepLab's ASPP meets this case whenever the image is smaller
    than ``rate x output_stride`` (rate 18 at output stride 16: images under 288 pixels), and
    there the fast path multiplies instead of convolving. Off under ``reference_ops()``,
    tracing, export and compile.
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, dilation: int = 1) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv needs an odd kernel size, got {kernel_size}")
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _eager_fast(x) and self.dilation[0] >= x.shape[-2] and self.dilation[1] >= x.shape[-1]:
            centre = self.kernel_size[0] // 2
            return x * self.weight[:, 0, centre, centre].view(1, -1, 1, 1)
        return super().forward(x)


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on laid out channels_last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def bilinear_resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``, fast backward on CPU.

    The gradient of a resized tensor that is then concatenated arrives as a channel slice of
    the concatenation's gradient: not contiguous in any layout, so PyTorch's backward makes it
    NCHW-contiguous and runs the NCHW kernel, ~40 ms for 8 x 256 x 64 x 64 on one thread
    against ~8 ms for a channels_last copy plus the channels_last kernel. For channels_last
    CPU float32 input the fast path makes that copy itself; the values are the same.
    """
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if _onednn_ok(x) and torch.is_grad_enabled() and out.requires_grad:
        return _ChannelsLastGrad.apply(out)
    return out


def _phase_kernels(weight: torch.Tensor) -> list[torch.Tensor]:
    """The four 2x2 kernels equivalent to a 3x3 kernel applied after 2x nearest up-sampling.

    Output row ``2i`` sees up-sampled rows ``2i-1, 2i, 2i+1`` = input rows ``i-1, i, i``: taps
    ``(w0, w1 + w2)`` on rows ``(i-1, i)``; output row ``2i+1`` sees input rows ``i, i, i+1``:
    taps ``(w0 + w1, w2)`` on rows ``(i, i+1)``. Same for columns. Returned in phase order
    ``(0, 0), (0, 1), (1, 0), (1, 1)``.
    """
    rows = [
        torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], dim=2),
        torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], dim=2),
    ]
    return [
        torch.stack([r[..., 0], r[..., 1] + r[..., 2]], dim=-1) if b == 0 else torch.stack([r[..., 0] + r[..., 1], r[..., 2]], dim=-1)
        for r in rows
        for b in (0, 1)
    ]


def _phase_views(big: torch.Tensor, out: torch.Tensor, co: int) -> tuple[torch.Tensor, torch.Tensor]:
    """6-d views ``P[n, y, x, a, b, c]`` of the phase outputs and ``Q[n, i, a, j, b, c]`` of the image.

    Both tensors must be contiguous in the same layout; ``Q[:, i, a, j, b] = P[:, i + a, j + b, a, b]``.
    """
    n, _, hp, wp = big.shape
    h, w = hp - 1, wp - 1
    if is_channels_last(big):
        return (big.permute(0, 2, 3, 1).view(n, hp, wp, 2, 2, co),
                out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, co))
    return (big.view(n, 2, 2, co, hp, wp).permute(0, 4, 5, 1, 2, 3),
            out.view(n, co, h, 2, w, 2).permute(0, 2, 3, 4, 5, 1))


class _PhaseInterleave(torch.autograd.Function):
    """Phase outputs ``N x 4C x h+1 x w+1`` -> image ``N x C x 2h x 2w`` (``_phase_views``), same layout.

    Autograd of the equivalent slices and stacks would give each of the four phase slices its
    own zero-filled gradient of the full phase tensor and then sum the four; this backward
    writes the four slices into one tensor and zeroes only the row and column each phase skips.
    """

    @staticmethod
    def forward(ctx, big: torch.Tensor, co: int) -> torch.Tensor:
        n, _, hp, wp = big.shape
        fmt = torch.channels_last if is_channels_last(big) else torch.contiguous_format
        big = big.contiguous(memory_format=fmt)
        out = torch.empty((n, co, 2 * (hp - 1), 2 * (wp - 1)), dtype=big.dtype, device=big.device, memory_format=fmt)
        phases, image = _phase_views(big, out, co)
        h, w = hp - 1, wp - 1
        for a in (0, 1):
            for b in (0, 1):
                image[:, :, a, :, b].copy_(phases[:, a : a + h, b : b + w, a, b])
        ctx.co, ctx.fmt = co, fmt
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        n, co, h2, w2 = grad.shape
        h, w = h2 // 2, w2 // 2
        grad = grad.contiguous(memory_format=ctx.fmt)
        grad_big = torch.empty((n, 4 * co, h + 1, w + 1), dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt)
        phases, image = _phase_views(grad_big, grad, co)
        for a in (0, 1):
            for b in (0, 1):
                phases[:, a : a + h, b : b + w, a, b].copy_(image[:, :, a, :, b])
                phases[:, h * (1 - a), :, a, b].zero_()  # the row and the column this phase never reads
                phases[:, :, w * (1 - b), a, b].zero_()
        return grad_big, None


def upsample_concat_conv3x3(x: torch.Tensor, skip: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """``conv3x3(cat([nearest_up2(x), skip]), weight, padding=1)`` without building either tensor.

    A 3x3 conv after 2x nearest up-sampling is, for each of the four output phases, a 2x2 conv
    at the input's resolution (the sub-pixel view of Shi et al. 2016): 16 instead of 36
    multiply-adds per input channel and 2x2 output block, and neither the up-sampled tensor nor
    the concatenation is allocated. The four phase kernels run as one conv with ``4 * Cout``
    outputs, the phases are interleaved (in the input's memory format), and the skip part is an
    ordinary 3x3 conv added on top.

    Args:
        x: ``N x Cx x h x w``.
        skip: ``N x Cs x 2h x 2w`` or ``None``.
        weight: ``Cout x (Cx + Cs) x 3 x 3`` (no bias).
    Returns:
        ``N x Cout x 2h x 2w``, equal to the plain computation up to float rounding.
    """
    n, cx, h, w = x.shape
    co = weight.shape[0]
    big = F.conv2d(F.pad(x, (1, 1, 1, 1)), torch.cat(_phase_kernels(weight[:, :cx]), dim=0))  # N x 4Cout x h+1 x w+1
    if _eager_fast(big):
        out = _PhaseInterleave.apply(big, co)
        return out if skip is None else out.add_(F.conv2d(skip, weight[:, cx:], padding=1))
    if is_channels_last(big):
        nhwc = big.permute(0, 2, 3, 1).view(n, h + 1, w + 1, 2, 2, co)
        rows = [torch.stack([nhwc[:, a : a + h, b : b + w, a, b] for b in (0, 1)], dim=3) for a in (0, 1)]
        out = torch.stack(rows, dim=2).view(n, 2 * h, 2 * w, co).permute(0, 3, 1, 2)
    else:
        nchw = big.view(n, 2, 2, co, h + 1, w + 1)
        rows = [torch.stack([nchw[:, a, b, :, a : a + h, b : b + w] for b in (0, 1)], dim=-1) for a in (0, 1)]
        out = torch.stack(rows, dim=3).view(n, co, 2 * h, 2 * w)
    if skip is not None:
        out = out + F.conv2d(skip, weight[:, cx:], padding=1)
    return out
