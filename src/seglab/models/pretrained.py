"""Pretrained backbone weights: the statistics they expect, and rebuilding a trained model without
them (loading a weights file strictly is :mod:`seglab.models.weights`).

This module sits above the model registry (``seglab.models``: ``DETECTION_MODELS``,
``model_kwargs``) and the encoders; nothing in ``seglab.models`` imports it.

A model's ``pretrained`` option (``True``, a torchvision weights name such as ``"IMAGENET1K_V1"``,
or the path of a weights file) only says where training starts. Once trained, the weights live in
the checkpoint's state dict: :func:`offline_kwargs` turns the kwargs a model was built with into
kwargs that build the same architecture without loading (or downloading) anything.

Backbones trained on ImageNet expect images scaled to [0, 1] then normalised with ImageNet's
per-channel mean and std; :func:`pretrained_normalization` finds those statistics in torchvision's
weights description (``weights.transforms()``) or timm's ``pretrained_cfg``, without downloading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seglab.models import DETECTION_MODELS, model_kwargs
from seglab.models.encoders import TORCHVISION_RESNETS
from seglab.models.weights import enum_names


def offline_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs that rebuild model ``name`` (built from ``kwargs``) with no weights loaded.

    ``pretrained`` becomes ``False``; a pretrained Mask R-CNN keeps its frozen batch norm (its
    state dict differs from a ``BatchNorm2d`` one), so ``frozen_batchnorm=True`` is spelled out.
    """
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


def pretrained_normalization(name: str, kwargs: Mapping[str, Any], in_channels: int) -> BackboneStatistics | None:
    """The normalisation statistics of model ``name``'s pretrained backbone, or ``None``.

    ``None`` when ``kwargs`` ask for no pretrained weights, the model has no pretrained backbone
    (a plain U-Net), or the backbone's description holds no statistics. Statistics for other
    than 3 channels follow :func:`adapt_statistics`. Nothing is downloaded.
    """
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
