"""Model.01: an all-convolution network at full resolution (no down-sampling).

The lecture's baseline: ``depth`` 3x3 ``ConvBNReLU`` layers at the input's resolution, then a
1x1 head. Each layer adds ``(k - 1) * dilation`` pixels to the receptive field, so with
``dilation=1`` it grows only linearly with depth (``1 + 2 * depth``) while the activation
memory of a training step grows with ``depth * width * H * W``: the net runs out of memory
before it sees enough context. Growing dilations (e.g. ``[1, 2, 4, 8]``, Yu & Koltun 2016,
"Multi-scale context aggregation by dilated convolutions") widen the view exponentially.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from seglab.errors import ConfigError
from seglab.models.base import Heads, SegmentationModel, head_sizes
from seglab.models.blocks import ConvBNReLU


class AllConvNet(SegmentationModel):
    """Full-resolution conv stack.

    Args:
        in_channels: image channels.
        num_classes: output channels of the logits.
        depth: number of 3x3 conv layers.
        width: channels of every layer.
        dilation: one dilation for all layers, or one per layer (``len == depth``).
        kernel_size: odd kernel size of every layer.
        aux_heads: extra named 1x1 heads, see ``seglab.models.base``.
    Shape: ``N x in_channels x H x W -> N x num_classes x H x W``.
    """

    def __init__(
        self, *, in_channels: int = 3, num_classes: int, depth: int = 8, width: int = 32,
        dilation: int | Sequence[int] = 1, kernel_size: int = 3, aux_heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        dilations = [dilation] * depth if isinstance(dilation, int) else list(dilation)
        if len(dilations) != depth or depth < 1:
            raise ConfigError(f"allconv: need depth >= 1 and one dilation per layer, got depth={depth}, dilation={dilation}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"allconv: kernel_size must be odd, got {kernel_size}")
        ins = [in_channels] + [width] * (depth - 1)
        self.encoder = nn.Sequential(
            *(ConvBNReLU(i, width, kernel_size, dilation=d) for i, d in zip(ins, dilations, strict=True))
        )
        self.decoder = nn.Identity()
        self.heads = Heads(width, head_sizes(num_classes, aux_heads))
