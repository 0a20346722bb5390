"""Model.04b: DeepLab v3 (Chen et al. 2017, "Rethinking atrous convolution for semantic image
segmentation").

A backbone dilated to output stride 8 or 16, ASPP with image pooling (``ASPPv3``), one 3x3
``ConvBNReLU``, a 1x1 classifier, bilinear up-sampling to the input. Laid out exactly like
torchvision's ``deeplabv3_resnet50`` (``DeepLabHead``), so the same weights give the same
outputs (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.models.base import Heads, SegmentationModel, head_sizes
from seglab.models.blocks import ASPPv3, ConvBNReLU
from seglab.models.encoders import create_encoder


class DeepLabV3Decoder(nn.Module):
    """ASPP on the deepest features, then a 3x3 ``ConvBNReLU``."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.aspp = ASPPv3(in_channels, channels, rates, dropout=dropout)
        self.conv = ConvBNReLU(channels, channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(self.aspp(features[-1]))


def aspp_rates(rates: Sequence[int] | None, output_stride: int) -> list[int]:
    """The paper's ``(6, 12, 18)`` at output stride 16, doubled at 8, unless given."""
    if output_stride not in (8, 16):
        raise ConfigError(f"deeplab: output_stride must be 8 or 16, got {output_stride!r}")
    return list(rates) if rates is not None else [r * 16 // output_stride for r in (6, 12, 18)]


class DeepLabV3(SegmentationModel):
    """DeepLab v3.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        encoder: backbone name (``resnet50`` default).
        output_stride: 8 or 16.
        rates: ASPP dilations (default ``(6, 12, 18)`` at 16, ``(12, 24, 36)`` at 8).
        channels: ASPP / decoder width (256).
        dropout: dropout after the ASPP projection.
        pretrained: backbone weights, see ``seglab.models.encoders``.
        aux_heads: extra named 1x1 heads, see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, encoder: str = "resnet50", output_stride: int = 8,
        rates: Sequence[int] | None = None, channels: int = 256, dropout: float = 0.5,
        pretrained: bool | str = False, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        rates = aspp_rates(rates, output_stride)
        self.encoder = create_encoder(encoder, in_channels, output_stride=output_stride, pretrained=pretrained)
        self.required_divisor = max(self.encoder.reductions)
        self.decoder = DeepLabV3Decoder(self.encoder.out_channels[-1], channels, rates, dropout)
        self.heads = Heads(channels, head_sizes(num_classes, aux_heads))
