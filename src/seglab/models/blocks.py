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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import unknown_choice
from seglab.models.fastpaths import DepthwiseConv, PointwiseConv, is_channels_last

UPSAMPLE_MODES = ("nearest", "maxunpool", "transposed", "resize_conv")


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
                DepthwiseConv(in_channels, kernel_size, dilation=dilation),
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
        pooled = self.conv(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, h, w)
        if is_channels_last(x):  # else the ASPP concatenation, and its gradient, fall back to NCHW
            pooled = pooled.contiguous(memory_format=torch.channels_last)
        return F.relu(self.bn(pooled))


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
