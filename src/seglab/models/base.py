"""The one ``forward`` every seglab model shares: pad -> encoder -> decoder -> heads -> crop.

Output contract (what the training engine and the predictor can rely on):

* Input ``x``: ``N x in_channels x H x W`` float, any ``H, W`` (no divisibility needed: the
  input is padded on the bottom/right to a multiple of ``required_divisor`` with reflection,
  or zeros when the image is smaller than the pad, and every output is cropped back).
* Plain model: returns a ``Tensor`` of logits ``N x num_classes x H x W``.
* With ``aux_heads={"embedding": 16, "seediness": 1}``: returns a dict
  ``{"logits": N x num_classes x H x W, "embedding": N x 16 x H x W, "seediness": N x 1 x H x W}``;
  every auxiliary head is a 1x1 conv on the same final decoder features as the logits.
* With ``deep_supervision=True`` (U-Net) in training mode: returns a dict with ``"logits"`` and
  ``"deep": [N x num_classes x H x W, ...]`` (coarsest first, each from a decoder level,
  bilinearly up-sampled); in eval mode the output is what it would be without deep supervision.
* Outputs coarser than the padded input (DeepLab, FCN) are bilinearly up-sampled to it
  (``align_corners=False``, as torchvision's segmentation models do).
* ``input_scale`` (``create_model(..., input_scale=0.5)``): the network runs on the input
  resized by that factor (bilinear, antialiased) and every output is resized back to ``H x W``:
  large objects (cells at high magnification) reach the network at the size it sees best, for a
  quarter of the compute. Part of the model, so training, validation, prediction and export
  all do it alike; it is recorded with the model's keyword arguments.

Speed: on CPU, ``model.to(memory_format=torch.channels_last)`` with channels_last input is the
fast configuration (oneDNN convolutions, see ``seglab.models.fastpaths``); outputs keep the
input's memory format. Results do not depend on it.

Subclasses only wire parts: ``self.encoder`` (image -> whatever ``self.decoder`` takes),
``self.decoder`` (-> features ``N x C x h x w``, or a list ``[final, *deep]`` for deep
supervision), ``self.heads`` (features -> dict of named outputs) and ``required_divisor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.fastpaths import PointwiseConv


class Heads(nn.Module):
    """Named 1x1 convs on the same features: ``{"logits": num_classes, **aux_heads}``."""

    def __init__(self, in_channels: int, sizes: dict[str, int]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({name: PointwiseConv(in_channels, c) for name, c in sizes.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: conv(features) for name, conv in self.convs.items()}


class SplitHeads(nn.Module):
    """Split the channels of an already-linear score map into named outputs (FCN, DeepLab v2)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        super().__init__()
        self.sizes = dict(sizes)

    def forward(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(scores, list(self.sizes.values()), dim=1)
        return dict(zip(self.sizes, parts, strict=True))


def head_sizes(num_classes: int, aux_heads: dict[str, int] | None) -> dict[str, int]:
    """``{"logits": num_classes, **aux_heads}``, refusing a clash with the reserved names."""
    aux = dict(aux_heads or {})
    for reserved in ("logits", "deep"):
        if reserved in aux:
            from seglab.errors import ConfigError

            raise ConfigError(f"aux_heads may not be named {reserved!r}")
    return {"logits": num_classes, **aux}


def pad_to_multiple(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Pad H and W (bottom / right) up to a multiple of ``divisor``: reflection, or zeros if too small."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "constant"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _to_size(t: torch.Tensor, size: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """Up-sample ``t`` bilinearly to the padded ``size`` if needed, then crop to ``h x w``."""
    if t.shape[-2:] != size:
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    if size != (h, w):
        t = t[..., :h, :w]
    return t


def _rescaled(forward, x: torch.Tensor, scale: float):
    """``forward`` on ``x`` resized by ``scale``; every output resized back to ``x``'s ``H x W``."""
    h, w = x.shape[-2:]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = forward(F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=scale < 1))
    back = lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
    if isinstance(out, torch.Tensor):
        return back(out)
    return {k: [back(t) for t in v] if isinstance(v, list) else back(v) for k, v in out.items()}


class SegmentationModel(nn.Module):
    """Base class: ``forward`` never changes; see the module docstring for the output contract."""

    required_divisor: int = 1
    input_scale: float = 1.0
    encoder: nn.Module
    decoder: nn.Module
    heads: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self.deep_heads = nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        if self.input_scale != 1.0:
            return _rescaled(self._forward, x, self.input_scale)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.required_divisor)
        size = (x.shape[-2], x.shape[-1])
        decoded = self.decoder(self.encoder(x))
        deep: list[torch.Tensor] = []
        if isinstance(decoded, list | tuple):
            decoded, deep = decoded[0], list(decoded[1:])
        outputs = {name: _to_size(t, size, h, w) for name, t in self.heads(decoded).items()}
        if deep and self.training:
            deep_logits = [_to_size(head(f), size, h, w) for head, f in zip(self.deep_heads, deep, strict=True)]
            return {**outputs, "deep": deep_logits}
        if len(outputs) == 1:
            return outputs["logits"]
        return outputs
