"""Segmentation models: ``create_model(name, *, in_channels=3, num_classes, **kwargs)``.

Every model is encoder -> decoder -> heads through ``seglab.models.base.SegmentationModel``,
whose docstring states the output contract (logits ``N x num_classes x H x W`` for any ``H x W``;
a dict when ``aux_heads`` or deep supervision add outputs). ``MODELS`` maps each name to its
class; a model's keyword arguments are its class's ``__init__`` arguments. ``DETECTION_MODELS``
names the direct instance-segmentation models (Mask R-CNN, imported on first use), which take lists of images and
return losses (training) or detections (evaluation) instead of logits.

Example:
    >>> import torch
    >>> model = create_model("unet", num_classes=3, encoder="resnet34")
    >>> model(torch.rand(2, 3, 70, 90)).shape
    torch.Size([2, 3, 70, 90])
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from seglab.errors import ConfigError, unknown_choice
from seglab.models.allconv import AllConvNet
from seglab.models.base import SegmentationModel
from seglab.models.deeplabv2 import DeepLabV2
from seglab.models.deeplabv3 import DeepLabV3
from seglab.models.deeplabv3plus import DeepLabV3Plus
from seglab.models.encdec import EncoderDecoder
from seglab.models.fcn import FCN
from seglab.models.unet import UNet

MODELS: dict[str, type[SegmentationModel]] = {
    "allconv": AllConvNet,
    "encdec": EncoderDecoder,
    "fcn": FCN,
    "unet": UNet,
    "deeplabv2": DeepLabV2,
    "deeplabv3": DeepLabV3,
    "deeplabv3plus": DeepLabV3Plus,
}

# name -> "module:class" of a detection model (lists of images in, losses or detections out);
# imported on first use: torchvision's detection stack costs about a second to import, and a
# U-Net checkpoint never needs it
DETECTION_MODELS: dict[str, str] = {"maskrcnn": "seglab.models.maskrcnn:MaskRCNNModel"}

__all__ = ["DETECTION_MODELS", "MODELS", "SegmentationModel", "create_model", "model_kwargs"]


def _model_class(name: str) -> type[nn.Module]:
    if name in MODELS:
        return MODELS[name]
    if name in DETECTION_MODELS:
        module, cls = DETECTION_MODELS[name].split(":")
        return getattr(importlib.import_module(module), cls)
    raise unknown_choice("model", name, [*MODELS, *DETECTION_MODELS])


def model_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments of model ``name`` with their defaults (``inspect.Parameter.empty`` if required)."""
    params = inspect.signature(_model_class(name).__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def create_model(name: str, *, in_channels: int = 3, num_classes: int, input_scale: float = 1.0, **kwargs: Any) -> nn.Module:
    """Build model ``name`` from ``MODELS`` or ``DETECTION_MODELS`` (random init unless ``pretrained=`` asks otherwise).

    ``input_scale`` (segmentation models): run the network on the input resized by this factor
    in (0, 1], outputs resized back (see :mod:`seglab.models.base`).

    Raises:
        ConfigError: unknown model name, or a keyword argument the model does not take (the
            message lists the valid ones).
    """
    valid = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(sorted(valid))}"
        )
    if not 0.0 < float(input_scale) <= 1.0 or (input_scale != 1.0 and name not in MODELS):
        raise ConfigError(f"model {name!r}: input_scale must be in (0, 1] (segmentation models only), got {input_scale}")
    model = _model_class(name)(in_channels=in_channels, num_classes=num_classes, **kwargs)
    if input_scale != 1.0:
        model.input_scale = float(input_scale)
    return model
