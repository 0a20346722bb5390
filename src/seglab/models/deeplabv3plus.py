"""Model.04c: DeepLab v3+ (Chen et al. 2018, "Encoder-decoder with atrous separable convolution
for semantic image segmentation").

DeepLab v3's ASPP at output stride 16 (or 8), up-sampled 4x (bilinear) to the ``/4`` encoder
features, which a 1x1 conv reduces to 48 channels; concatenated, two 3x3 ``ConvBNReLU``
(depthwise-separable by default, as in the paper), a 1x1 classifier, bilinear up-sampling to
the input.

Speed (CPU): the decoder works in channels_last even for NCHW input (``fastpaths.onednn_layout``:
its depthwise convolutions and the 4x resize run 3-20x slower on NCHW tensors); the logits
are handed back in the input's layout; the resize's backward gets a channels_last gradient
(``fastpaths.bilinear_resize``). Values do not depend on any of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.models.base import Heads, SegmentationModel, head_sizes
from seglab.models.blocks import ASPPv3, ConvBNReLU
from seglab.models.deeplabv3 import aspp_rates
from seglab.models.encoders import create_encoder
from seglab.models.fastpaths import bilinear_resize, layout_like, onednn_layout


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest features, fused with projected low-level features."""

    def __init__(
        self, in_channels: int, low_channels: int, low_index: int, channels: int, rates: Sequence[int],
        *, separable: bool, dropout: float, low_out: int = 48,
    ) -> None:
        super().__init__()
        self.low_index = low_index
        self.aspp = ASPPv3(in_channels, channels, rates, separable=separable, dropout=dropout)
        self.low = ConvBNReLU(low_channels, low_out, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(channels + low_out, channels, separable=separable),
            ConvBNReLU(channels, channels, separable=separable),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        deep_in, low_in = onednn_layout(features[-1]), onednn_layout(features[self.low_index])
        low = self.low(low_in)
        deep = bilinear_resize(self.aspp(deep_in), low.shape[-2:])
        return self.fuse(torch.cat([deep, low], dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLab v3+.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        encoder: backbone name (``resnet50`` default; the paper used Xception / ResNet-101).
        output_stride: 16 (default) or 8.
        rates: ASPP dilations (default ``(6, 12, 18)`` at 16, ``(12, 24, 36)`` at 8).
        channels: ASPP / decoder width (256).
        separable: depthwise-separable 3x3 convs in ASPP and decoder.
        dropout: dropout after the ASPP projection.
        pretrained: backbone weights, see ``seglab.models.encoders``.
        aux_heads: extra named 1x1 heads, see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, encoder: str = "resnet50", output_stride: int = 16,
        rates: Sequence[int] | None = None, channels: int = 256, separable: bool = True, dropout: float = 0.5,
        pretrained: bool | str = False, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        rates = aspp_rates(rates, output_stride)
        self.encoder = create_encoder(encoder, in_channels, output_stride=output_stride, pretrained=pretrained)
        reductions = self.encoder.reductions
        if 4 not in reductions:
            raise ConfigError(f"deeplabv3plus: encoder {encoder!r} has no /4 features (reductions {reductions})")
        low_index = max(i for i, r in enumerate(reductions) if r == 4)
        self.required_divisor = max(reductions)
        self.decoder = DeepLabV3PlusDecoder(
            self.encoder.out_channels[-1], self.encoder.out_channels[low_index], low_index, channels, rates,
            separable=separable, dropout=dropout,
        )
        self.heads = Heads(channels, head_sizes(num_classes, aux_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """``SegmentationModel.forward``, outputs in the input's layout (the decoder's may differ)."""
        return layout_like(super().forward(x), x)
