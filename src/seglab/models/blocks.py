"""Layers the architectures are wired from: conv blocks, up-sampling modes and ASPP.

Up-sampling modes (``make_upsample``), the lecture's four ways to go back up in resolution:

``nearest``
    parameter-free "unpooling": copy every value into a ``scale x scale`` block (a 1x1 conv
    follows only when the channel count must change).
``maxunpool``
    SegNet (Badrinarayanan et al. 2017): put each value back at the position the matching
    encoder max-pool took it from, zeros elsewhere; needs that pool's indices.
``transposed``
    learned deconvolution, ``ConvTranspose2d(k=2, s=2)`` (or ``k=4, s=2, p=1``); kernels whose
    size is not a multiple of the stride overlap unevenly and produce checkerboard artefacts.
``resize_conv``
    bilinear resize then a 3x3 conv (Odena et al. 2016, "Deconvolution and checkerboard
    artifacts"): learned like ``transposed`` but without the uneven overlap.

ASPP: ``ASPPv2`` sums dilated 3x3 branches that each predict the output directly (Chen et al.
2017, DeepLab v2); ``ASPPv3`` concatenates a 1x1 branch, dilated 3x3 branches and image pooling,
then projects with a 1x1 conv (Chen et al. 2017, "Rethinking atrous convolution", DeepLab v3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import unknown_choice

UPSAMPLE_MODES = ("nearest", "maxunpool", "transposed", "resize_conv")
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


def _onednn_ok(x: torch.Tensor) -> bool:
    """CPU float32 channels_last eager input, not being traced, exported or compiled."""
    return (
        _FAST_PATHS[0]
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and hasattr(torch, "mkldnn_convolution")
        and torch.backends.mkldnn.is_available()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
    )


class PointwiseConv(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state_dict) that runs oneDNN on channels_last CPU input.

    PyTorch sends 1x1 convolutions to a generic GEMM path; for channels_last float32 tensors on
    CPU oneDNN's own convolution is 1.5-2.5x faster (measured for 256-304 channels at 64 x 64).
    Everywhere else (NCHW, GPU, tracing, export) it is a plain ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_ok(x):
            return torch.mkldnn_convolution(x, self.weight, self.bias, [0, 0], list(self.stride), [1, 1], 1)
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


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d``, or ``PointwiseConv`` for a plain 1x1 conv."""
    if kernel_size == 1 and kwargs.get("groups", 1) == 1 and kwargs.get("dilation", 1) == 1 and not kwargs.get("padding"):
        return PointwiseConv(in_channels, out_channels, bias=bias, stride=kwargs.get("stride", 1))
    return nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, **kwargs)


class ConvBNReLU(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> ReLU``, padding keeps the size at stride 1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        dilation: kernel dilation (padding grows with it).
        separable: depthwise ``k x k`` followed by pointwise ``1 x 1`` (Chollet 2017).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, dilation: int = 1, separable: bool = False
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        if separable:
            conv: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation,
                          groups=in_channels, bias=False),
                PointwiseConv(in_channels, out_channels, bias=False),
            )
        else:
            conv = conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    """Two ``ConvBNReLU`` 3x3 layers: the U-Net / VGG stage (Ronneberger et al. 2015)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class ResidualBlock(nn.Module):
    """Basic residual block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` (He et al. 2016).

    The shortcut is the identity when the channel count is unchanged, else a 1x1 conv + BN.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(PointwiseConv(in_channels, out_channels, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.conv1(x)))
        return F.relu_(y + self.shortcut(x))


def conv_stage(in_channels: int, out_channels: int, *, residual: bool) -> nn.Module:
    """The two-conv stage of the plain encoder / decoder, residual or not."""
    return ResidualBlock(in_channels, out_channels) if residual else DoubleConv(in_channels, out_channels)


class NearestUpsample(nn.Module):
    """Parameter-free unpooling: ``repeat_interleave`` by ``scale`` along H and W."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return F.interpolate(x, scale_factor=float(self.scale), mode="nearest")


class MaxUnpool(nn.Module):
    """SegNet unpooling: values go back to the encoder pool's argmax positions, zeros elsewhere."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            raise ValueError("maxunpool needs the indices of the matching encoder max-pool")
        h, w = x.shape[-2:]
        return F.max_unpool2d(x, indices, self.scale, self.scale, output_size=(h * self.scale, w * self.scale))


class Upsample(nn.Module):
    """An up-sampling step ``in_channels -> out_channels`` at ``scale``; see ``make_upsample``.

    ``forward(x, indices=None)``: ``indices`` is used by ``maxunpool`` only.
    Shape: ``N x in_channels x h x w -> N x out_channels x (scale*h) x (scale*w)``.
    """

    def __init__(self, mode: str, in_channels: int, out_channels: int, scale: int = 2) -> None:
        super().__init__()
        self.mode = mode
        self.out_channels = out_channels
        # Channel change before the parameter-free modes (cheaper at low resolution).
        self.pre: nn.Module = nn.Identity()
        self.post: nn.Module = nn.Identity()
        if mode == "nearest":
            self.up: nn.Module = NearestUpsample(scale)
            if in_channels != out_channels:
                self.pre = PointwiseConv(in_channels, out_channels, bias=False)
        elif mode == "maxunpool":
            self.up = MaxUnpool(scale)
            if in_channels != out_channels:
                self.pre = PointwiseConv(in_channels, out_channels, bias=False)
        elif mode == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=scale, stride=scale)
        elif mode == "resize_conv":
            self.up = nn.Upsample(scale_factor=float(scale), mode="bilinear", align_corners=False)
            self.post = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        else:
            raise unknown_choice("upsample mode", mode, UPSAMPLE_MODES)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre(x)
        x = self.up(x, indices) if isinstance(self.up, NearestUpsample | MaxUnpool) else self.up(x)
        return self.post(x)


def make_upsample(mode: str, in_channels: int, out_channels: int, scale: int = 2) -> Upsample:
    """Build one of ``UPSAMPLE_MODES``: ``nearest | maxunpool | transposed | resize_conv``.

    Raises:
        ConfigError: unknown mode.
    """
    return Upsample(mode, in_channels, out_channels, scale)


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
    if big.is_contiguous(memory_format=torch.channels_last) and not big.is_contiguous():
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


class ASPPv2(nn.Module):
    """DeepLab v2 ASPP: dilated 3x3 convs on the same features, each predicting the output; summed.

    Args:
        in_channels: backbone channels.
        out_channels: outputs of every branch (the classes, plus any auxiliary head channels).
        rates: one dilation per branch; the paper's ASPP-L uses ``(6, 12, 18, 24)``.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r) for r in rates
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class ImagePooling(nn.Module):
    """DeepLab v3 image-level features: global average, 1x1 conv, BN, ReLU, broadcast to h x w.

    BatchNorm is applied after the broadcast: in eval mode and for the training-mode output this is
    the same as normalising the pooled vector (every value is repeated h*w times), and it keeps
    working at batch size 1, where BN on an ``N x C x 1 x 1`` tensor refuses to train.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = PointwiseConv(in_channels, out_channels, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = self.conv(x.mean(dim=(2, 3), keepdim=True))
        return F.relu(self.bn(pooled.expand(-1, -1, h, w)))


class ASPPv3(nn.Module):
    """DeepLab v3 ASPP: ``[1x1, 3x3 at each rate, image pooling]`` -> concat -> 1x1 -> BN -> ReLU.

    Args:
        in_channels: backbone channels.
        out_channels: channels of every branch and of the projection (256 in the paper).
        rates: dilations of the 3x3 branches, ``(6, 12, 18)`` at output stride 16, doubled at 8.
        separable: depthwise-separable 3x3 branches (DeepLab v3+).
        dropout: dropout after the projection (0.5 in torchvision's ``DeepLabHead``).
    Shape: ``N x in_channels x h x w -> N x out_channels x h x w``.
    """

    def __init__(
        self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18), *,
        separable: bool = False, dropout: float = 0.5,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvBNReLU(in_channels, out_channels, 1)]
        branches += [ConvBNReLU(in_channels, out_channels, 3, dilation=r, separable=separable) for r in rates]
        branches.append(ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvBNReLU(len(branches) * out_channels, out_channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
