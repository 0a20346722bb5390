"""FCN-32s / 16s / 8s: fully convolutional networks with skip fusion (Long et al. 2015).

A 1x1 "score" conv predicts the outputs from the deepest features (``/32``); FCN-16s adds the
2x up-sampled scores to scores predicted from the ``/16`` features, FCN-8s again with ``/8``;
the fused scores are bilinearly up-sampled to the input. The paper initialises its learned
up-sampling to bilinear interpolation; we keep it fixed bilinear, so all fusion is linear in
the scores and auxiliary heads are simply extra score channels (``SplitHeads``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError, unknown_choice
from seglab.models.base import SegmentationModel, SplitHeads, head_sizes
from seglab.models.encoders import PlainEncoder, create_encoder
from seglab.models.fastpaths import PointwiseConv

VARIANTS = {"32s": 1, "16s": 2, "8s": 3}  # number of fused stages


class FCNDecoder(nn.Module):
    """Score the last ``n`` distinct-resolution stages and fuse them coarse to fine."""

    def __init__(self, encoder_channels: list[int], reductions: list[int], out_channels: int, n_stages: int) -> None:
        super().__init__()
        # The last feature of each distinct reduction, deepest first.
        picks = [i for i in range(len(reductions)) if i == len(reductions) - 1 or reductions[i + 1] != reductions[i]]
        picks = picks[::-1][:n_stages]
        if len(picks) < n_stages:
            raise ConfigError(f"fcn: the encoder has only {len(picks)} resolutions, the variant needs {n_stages}")
        self.picks = picks
        self.scores = nn.ModuleList(PointwiseConv(encoder_channels[i], out_channels) for i in picks)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self.scores[0](features[self.picks[0]])
        for score, i in zip(self.scores[1:], self.picks[1:], strict=True):
            skip = score(features[i])
            out = F.interpolate(out, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
        return out


class FCN(SegmentationModel):
    """FCN on a backbone.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        variant: ``"32s" | "16s" | "8s"``.
        encoder: ``None`` (VGG-style plain encoder, five 2x down-samplings) or a backbone name.
        base_channels: plain-encoder channels at full resolution (doubled per level, at most 512).
        pretrained: backbone weights, see ``seglab.models.encoders``.
        aux_heads: extra named outputs (extra score channels), see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, variant: str = "8s", encoder: str | None = None,
        base_channels: int = 64, pretrained: bool | str = False, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise unknown_choice("fcn variant", variant, VARIANTS)
        if encoder is None:
            self.encoder = PlainEncoder(in_channels, [min(base_channels * 2**i, 512) for i in range(6)])
        else:
            self.encoder = create_encoder(encoder, in_channels, pretrained=pretrained)
        sizes = head_sizes(num_classes, aux_heads)
        self.required_divisor = max(self.encoder.reductions)
        self.decoder = FCNDecoder(self.encoder.out_channels, self.encoder.reductions, sum(sizes.values()), VARIANTS[variant])
        self.heads = SplitHeads(sizes)
