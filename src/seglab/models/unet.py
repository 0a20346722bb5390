"""Model.03: U-Net (Ronneberger et al. 2015), classic or on any backbone.

Encoder features are merged back into the decoder through skip connections: each decoder level
up-samples (``upsample=``: ``nearest | maxunpool | transposed | resize_conv``), concatenates the
encoder features of that resolution and applies two 3x3 convs (a residual block with
``residual=True``, as in residual U-Nets, Zhang et al. 2018). Backbones whose finest features are
coarser than the input (ResNets start at ``/2``) get extra skip-less levels up to full
resolution, as segmentation_models_pytorch does. Deep supervision (Lee et al. 2015, "Deeply
supervised nets"; used by UNet++ and nnU-Net) adds a 1x1 head on every coarser decoder level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.models.base import Heads, SegmentationModel, head_sizes
from seglab.models.blocks import UPSAMPLE_MODES, conv_stage, make_upsample
from seglab.models.encoders import PlainEncoder, create_encoder
from seglab.models.fastpaths import PointwiseConv, fast_paths_enabled, upsample_concat_conv3x3

# Below this many input pixels (N * h * w) the fused path's extra small ops cost more than the
# multiply-adds it saves (measured on CPU); the plain path runs instead (same result).
FUSED_MIN_PIXELS = 512


class UNetBlock(nn.Module):
    """Up-sample ``x`` by ``scale``, concatenate ``skip`` (if any), two convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, scale: int, upsample: str, residual: bool) -> None:
        super().__init__()
        if scale == 1:
            self.up: nn.Module | None = None
            up_channels = in_channels
        else:
            up_channels = {"nearest": in_channels, "maxunpool": skip_channels}.get(upsample, max(in_channels // 2, 1))
            self.up = make_upsample(upsample, in_channels, up_channels, scale)
        self.conv = conv_stage(up_channels + skip_channels, out_channels, residual=residual)
        # nearest x2 + concat + plain 3x3 conv: computed at low resolution (same weights, same result).
        self.fused = upsample == "nearest" and scale == 2 and not residual

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, indices: torch.Tensor | None) -> torch.Tensor:
        if self.fused and fast_paths_enabled() and x.shape[0] * x.shape[2] * x.shape[3] >= FUSED_MIN_PIXELS:
            first, second = self.conv[0], self.conv[1]
            y = upsample_concat_conv3x3(x, skip, first[0].weight)
            return second(first[2](first[1](y)))
        if self.up is not None:
            x = self.up(x, indices)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNetDecoder(nn.Module):
    """Decoder over features of any reductions (finest first); see the module docstring."""

    def __init__(
        self, encoder_channels: Sequence[int], reductions: Sequence[int], decoder_channels: Sequence[int],
        *, upsample: str, residual: bool, deep_supervision: bool,
    ) -> None:
        super().__init__()
        plan = _decoder_plan(list(encoder_channels), list(reductions))
        if len(decoder_channels) != len(plan):
            raise ConfigError(f"unet: decoder_channels needs {len(plan)} values for this encoder, got {list(decoder_channels)}")
        self.skip_index = [s for s, _, _ in plan]
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            UNetBlock(i, sc, o, scale=scale, upsample=upsample, residual=residual)
            for i, (_, sc, scale), o in zip(ins, plan, decoder_channels, strict=True)
        )
        self.deep_supervision = deep_supervision
        self.out_channels = list(decoder_channels)

    def forward(self, encoded: list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor | list[torch.Tensor]:
        features, indices = encoded if isinstance(encoded, tuple) else (encoded, None)
        x = features[-1]
        deep = []
        for level, (block, s) in enumerate(zip(self.blocks, self.skip_index, strict=True)):
            idx = None if indices is None else indices[len(indices) - 1 - level]
            x = block(x, None if s < 0 else features[s], idx)
            deep.append(x)
        if self.deep_supervision and self.training:
            return [x, *deep[:-1]]
        return x


def _decoder_plan(channels: list[int], reductions: list[int]) -> list[tuple[int, int, int]]:
    """(skip index or -1, skip channels, up-sampling scale) for every decoder level, deepest first."""
    plan = []
    for i in range(len(channels) - 2, -1, -1):
        plan.append((i, channels[i], reductions[i + 1] // reductions[i]))
    r = reductions[0]
    while r > 1:
        plan.append((-1, 0, 2))
        r //= 2
    return plan


class UNet(SegmentationModel):
    """U-Net.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        encoder: ``None`` (classic U-Net encoder), ``resnet18 | resnet34 | resnet50`` (torchvision)
            or a timm model name (``"timm:"`` prefix optional).
        depth: number of down-samplings of the classic encoder (ignored with a backbone).
        base_channels: classic encoder channels at full resolution, doubled per level.
        decoder_channels: output channels of every decoder level (deepest first); default mirrors
            the classic encoder, or ``256, 128, 64, 32, 16`` with a backbone.
        upsample: ``nearest | maxunpool | transposed | resize_conv`` (``maxunpool`` needs the
            classic encoder, whose pools record their indices).
        residual: residual conv stages in the classic encoder and in the decoder.
        deep_supervision: extra logits from coarser decoder levels in training mode.
        pretrained: backbone weights, see ``seglab.models.encoders``.
        aux_heads: extra named 1x1 heads, see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, encoder: str | None = None, depth: int = 4,
        base_channels: int = 64, decoder_channels: Sequence[int] | None = None, upsample: str = "nearest",
        residual: bool = False, deep_supervision: bool = False, pretrained: bool | str = False,
        aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            from seglab.errors import unknown_choice

            raise unknown_choice("upsample mode", upsample, UPSAMPLE_MODES)
        if encoder is None:
            channels = [base_channels * 2**i for i in range(depth + 1)]
            self.encoder = PlainEncoder(in_channels, channels, residual=residual, return_indices=upsample == "maxunpool")
            default_decoder = channels[-2::-1]
        else:
            if upsample == "maxunpool":
                raise ConfigError("unet: upsample='maxunpool' needs the classic encoder (encoder=None): backbones do not return pooling indices")
            self.encoder = create_encoder(encoder, in_channels, pretrained=pretrained)
            n_levels = len(_decoder_plan(self.encoder.out_channels, self.encoder.reductions))
            default_decoder = [max(256 // 2**i, 16) for i in range(n_levels)]
        self.required_divisor = max(self.encoder.reductions)
        self.decoder = UNetDecoder(
            self.encoder.out_channels, self.encoder.reductions, decoder_channels or default_decoder,
            upsample=upsample, residual=residual, deep_supervision=deep_supervision,
        )
        self.heads = Heads(self.decoder.out_channels[-1], head_sizes(num_classes, aux_heads))
        if deep_supervision:
            self.deep_heads = nn.ModuleList(PointwiseConv(c, num_classes) for c in self.decoder.out_channels[:-1])
