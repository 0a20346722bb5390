"""Model.02: encoder-decoder without skip connections (SegNet-like, Badrinarayanan et al. 2017).

The encoder halves the resolution ``depth`` times (``PlainEncoder``); the decoder mirrors it,
each level up-sampling with ``upsample=`` (``nearest | maxunpool | transposed | resize_conv``,
see ``seglab.models.blocks``) then applying two 3x3 convs. Without skips, fine detail must
survive the bottleneck: compare with ``unet``.
"""

from __future__ import annotations

import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.models.base import Heads, SegmentationModel, head_sizes
from seglab.models.blocks import conv_stage, make_upsample
from seglab.models.encoders import PlainEncoder


class MirrorDecoder(nn.Module):
    """Up-sample from the deepest features level by level (no skips) back to full resolution."""

    def __init__(self, channels: list[int], upsample: str, *, residual: bool = False) -> None:
        super().__init__()
        # Level i goes from channels[i] at /2^i to channels[i-1] at /2^(i-1).
        self.ups = nn.ModuleList(make_upsample(upsample, channels[i], channels[i - 1]) for i in range(len(channels) - 1, 0, -1))
        self.convs = nn.ModuleList(
            conv_stage(channels[i - 1], channels[i - 1], residual=residual) for i in range(len(channels) - 1, 0, -1)
        )

    def forward(self, encoded: list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
        features, indices = encoded if isinstance(encoded, tuple) else (encoded, None)
        x = features[-1]
        for level, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True)):
            idx = None if indices is None else indices[len(indices) - 1 - level]
            x = conv(up(x, idx))
        return x


class EncoderDecoder(SegmentationModel):
    """Encoder-decoder, no skips.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        depth: number of 2x down-samplings (input padded to a multiple of ``2**depth``).
        base_channels: channels at full resolution, doubled at every level.
        upsample: ``nearest | maxunpool | transposed | resize_conv``.
        residual: residual conv stages.
        aux_heads: extra named 1x1 heads, see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, depth: int = 4, base_channels: int = 32,
        upsample: str = "maxunpool", residual: bool = False, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"encdec: depth must be >= 1, got {depth}")
        channels = [base_channels * 2**i for i in range(depth + 1)]
        self.required_divisor = 2**depth
        self.encoder = PlainEncoder(in_channels, channels, residual=residual, return_indices=upsample == "maxunpool")
        self.decoder = MirrorDecoder(channels, upsample, residual=residual)
        self.heads = Heads(base_channels, head_sizes(num_classes, aux_heads))
