"""Pretrained backbone weights: loading them strictly, the statistics they expect, and rebuilding
a trained model without them.

A model's ``pretrained`` option (``True``, a torchvision weights name such as ``"IMAGENET1K_V1"``,
or the path of a weights file) only says where training starts. Once trained, the weights live in
the checkpoint's state dict: :func:`offline_kwargs` turns the kwargs a model was built with into
kwargs that build the same architecture without loading (or downloading) anything.

Backbones trained on ImageNet expect images scaled to [0, 1] then normalised with ImageNet's
per-channel mean and std; :func:`pretrained_normalization` finds those statistics in torchvision's
weights description (``weights.transforms()``) or timm's ``pretrained_cfg``, without downloading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def offline_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs that rebuild model ``name`` (built from ``kwargs``) with no weights loaded.

    ``pretrained`` becomes ``False``; a pretrained Mask R-CNN keeps its frozen batch norm (its
    state dict differs from a ``BatchNorm2d`` one), so ``frozen_batchnorm=True`` is spelled out.
    """
    from seglab.models import DETECTION_MODELS

    out = dict(kwargs)
    if not out.get("pretrained"):
        return out
    out["pretrained"] = False
    if name in DETECTION_MODELS and out.get("frozen_batchnorm") is None:
        out["frozen_batchnorm"] = True
    return out


@dataclass(frozen=True)
class BackboneStatistics:
    """Per-channel mean and std of [0, 1] images a pretrained backbone was trained with."""

    mean: list[float]
    std: list[float]
    source: str  # e.g. "torchvision ResNet18_Weights.IMAGENET1K_V1"


def adapt_statistics(values: Sequence[float], in_channels: int) -> list[float]:
    """RGB statistics for ``in_channels`` channels, as :func:`~seglab.models.encoders.adapt_first_conv_weight`
    adapts the first convolution: the RGB values, the mean of them for every other channel."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if in_channels < len(values):
        return [mean] * in_channels
    return values + [mean] * (in_channels - len(values))


def _torchvision_statistics(architecture: str, pretrained: bool | str) -> BackboneStatistics:
    import torchvision

    enum = torchvision.models.get_model_weights(architecture)
    named = isinstance(pretrained, str) and pretrained in enum_names(enum)
    weights = enum[pretrained] if named else enum["DEFAULT"]
    transforms = weights.transforms()
    source = f"torchvision {weights}" if named or pretrained is True else f"torchvision {weights}, assumed for {pretrained}"
    return BackboneStatistics(list(transforms.mean), list(transforms.std), source)


def _timm_statistics(architecture: str) -> BackboneStatistics | None:
    import timm

    try:
        cfg = timm.get_pretrained_cfg(architecture)
    except Exception:  # an unregistered tag: no statistics to offer
        return None
    if cfg is None or not getattr(cfg, "mean", None) or not getattr(cfg, "std", None):
        return None
    return BackboneStatistics(list(cfg.mean), list(cfg.std), f"timm {architecture}")


def enum_names(enum: Any) -> list[str]:
    """The names a torchvision weights enum accepts (``"DEFAULT"`` first)."""
    return ["DEFAULT", *(w.name for w in enum)]


def pretrained_normalization(name: str, kwargs: Mapping[str, Any], in_channels: int) -> BackboneStatistics | None:
    """The normalisation statistics of model ``name``'s pretrained backbone, or ``None``.

    ``None`` when ``kwargs`` ask for no pretrained weights, the model has no pretrained backbone
    (a plain U-Net), or the backbone's description holds no statistics. Statistics for other
    than 3 channels follow :func:`adapt_statistics`. Nothing is downloaded.
    """
    from seglab.models import DETECTION_MODELS, model_kwargs
    from seglab.models.encoders import TORCHVISION_RESNETS

    pretrained = kwargs.get("pretrained")
    if not pretrained:
        return None
    if name in DETECTION_MODELS:
        backbone = kwargs.get("backbone", model_kwargs(name).get("backbone"))
        architecture = {"mobilenet_v3_fpn": "mobilenet_v3_large"}.get(backbone, str(backbone).removesuffix("_fpn"))
        stats = _torchvision_statistics(architecture, True)
    else:
        encoder = kwargs.get("encoder", model_kwargs(name).get("encoder"))
        if not isinstance(encoder, str):
            return None
        if encoder in TORCHVISION_RESNETS:
            stats = _torchvision_statistics(encoder, pretrained)
        else:
            stats = _timm_statistics(encoder.removeprefix("timm:"))
    if stats is None:
        return None
    return BackboneStatistics(adapt_statistics(stats.mean, in_channels), adapt_statistics(stats.std, in_channels), stats.source)


# -- loading weights that must fit --------------------------------------------------------------


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _keys(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def describe_mismatch(
    missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[tuple[str, Sequence[int], Sequence[int]]]
) -> str | None:
    """One line saying which weights do not fit, or ``None`` when all do.

    ``shapes`` holds ``(key, loaded shape, model shape)``; e.g. ``"3 missing keys (a, b, c),
    2 unexpected (d, e), 1 with another shape (f: checkpoint [3, 16, 1, 1], model [3, 8, 1, 1])"``.
    """
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' if len(missing) != 1 else ''} ({_keys(list(missing))})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_keys(list(unexpected))})")
    if shapes:
        shown = "; ".join(f"{k}: checkpoint {_shape(a)}, model {_shape(b)}" for k, a, b in shapes[:2])
        more = f"; ... {len(shapes) - 2} more" if len(shapes) > 2 else ""
        parts.append(f"{len(shapes)} with another shape ({shown}{more})")
    return ", ".join(parts) or None


def load_fitting_weights(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Load ``state`` into ``module`` if every weight fits; else return what did not fit.

    Returns:
        ``None`` when ``state`` was loaded (same keys, same shapes: what ``strict=True`` checks),
        else :func:`describe_mismatch`'s line; ``module`` may then hold some of the weights.
    """
    own = module.state_dict()
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
              if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    wrong = {k for k, _, _ in shapes}
    fitting = {k: v for k, v in state.items() if k not in wrong}
    if hasattr(state, "_metadata"):  # module versions, for the modules' own key upgrades
        fitting = type(state)(fitting) if isinstance(state, dict) else fitting
        fitting._metadata = state._metadata  # type: ignore[attr-defined]
    result = module.load_state_dict(fitting, strict=False)
    missing = [k for k in result.missing_keys if k not in wrong]
    return describe_mismatch(missing, list(result.unexpected_keys), shapes)


def summarise_load_error(message: str) -> str:
    """PyTorch's multi-line ``load_state_dict`` error as :func:`describe_mismatch`'s one line."""

    def keys(title: str) -> list[str]:
        found = re.search(rf"{title} key\(s\) in state_dict: (.*)", message)
        return re.findall(r'"([^"]+)"', found.group(1)) if found else []

    shapes = [
        (k, [int(s) for s in a.split(",") if s.strip()], [int(s) for s in b.split(",") if s.strip()])
        for k, a, b in re.findall(
            r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
            r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)", message)
    ]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return describe_mismatch(keys("Missing"), keys("Unexpected"), shapes) or (lines[0] if lines else "does not load")
