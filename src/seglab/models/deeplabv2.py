"""Model.04a: DeepLab v2 (Chen et al. 2017, "DeepLab: semantic image segmentation with deep
convolutional nets, atrous convolution, and fully connected CRFs").

A backbone dilated to output stride 8 (or 16), then ASPP-L: four dilated 3x3 convs (rates 6, 12,
18, 24) that each predict the class scores; their sum is bilinearly up-sampled to the input.
The CRF post-processing of the paper is not part of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seglab.errors import ConfigError
from seglab.models.base import SegmentationModel, SplitHeads, head_sizes
from seglab.models.blocks import ASPPv2
from seglab.models.encoders import create_encoder


class DeepestFeatures(ASPPv2):
    """``ASPPv2`` applied to the last encoder feature map."""

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(features[-1])


class DeepLabV2(SegmentationModel):
    """DeepLab v2.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        encoder: backbone name (``resnet50`` default; the paper used ResNet-101).
        output_stride: 8 (paper) or 16.
        rates: ASPP dilations at output stride 8 (halved at 16).
        pretrained: backbone weights, see ``seglab.models.encoders``.
        aux_heads: extra named outputs (extra score channels of every branch).
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, encoder: str = "resnet50", output_stride: int = 8,
        rates: Sequence[int] = (6, 12, 18, 24), pretrained: bool | str = False, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ConfigError(f"deeplabv2: output_stride must be 8 or 16, got {output_stride!r}")
        self.encoder = create_encoder(encoder, in_channels, output_stride=output_stride, pretrained=pretrained)
        self.required_divisor = max(self.encoder.reductions)
        sizes = head_sizes(num_classes, aux_heads)
        scaled = [max(r * 8 // output_stride, 1) for r in rates]
        self.decoder = DeepestFeatures(self.encoder.out_channels[-1], sum(sizes.values()), scaled)
        self.heads = SplitHeads(sizes)
