"""Encoders (backbones): an image in, a list of feature maps out, finest first.

Every encoder states ``out_channels`` (channels per stage) and ``reductions`` (each stage's
down-sampling factor relative to the input), so decoders never guess. Three kinds:

``PlainEncoder``
    the classic U-Net / VGG encoder built from ``blocks.conv_stage``; stage 0 is at full
    resolution, each further stage is a 2x2 max-pool then two 3x3 convs. It can also return the
    max-pool indices (for SegNet-style ``maxunpool`` decoders).
``TorchvisionResNet``
    ``resnet18 | resnet34 | resnet50`` from torchvision (He et al. 2016), stages after the stem
    (``/2``) and after ``layer1..layer4`` (``/4 .. /32``).
``TimmEncoder``
    any timm model via ``timm.create_model(name, features_only=True)``.

Output stride 8 or 16 dilates the last stages instead of striding (Chen et al. 2017); the
first block of a dilated stage keeps the previous dilation, the others use the new one, as
torchvision's ``replace_stride_with_dilation`` does (which we re-implement because torchvision
refuses it for BasicBlock ResNets 18 and 34).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from seglab.errors import ConfigError, DataError
from seglab.models.blocks import conv_stage
from seglab.models.fastpaths import PointwiseConv
from seglab.models.weights import (
    describe_mismatch,
    enum_names,
    load_fitting_weights,
    summarise_load_error,
)

TORCHVISION_RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class PlainEncoder(nn.Module):
    """Classic U-Net encoder: ``conv_stage`` at full resolution, then ``depth`` x (pool, stage).

    Args:
        in_channels: image channels.
        channels: output channels of each of the ``depth + 1`` stages.
        residual: residual stages (``ResidualBlock``) instead of two plain convs.
        return_indices: forward returns ``(features, pool_indices)``; ``pool_indices[i]`` is the
            argmax of the pool that feeds stage ``i + 1``.
    """

    def __init__(
        self, in_channels: int, channels: Sequence[int], *, residual: bool = False, return_indices: bool = False
    ) -> None:
        super().__init__()
        self.out_channels = list(channels)
        self.reductions = [2**i for i in range(len(channels))]
        self.return_indices = return_indices
        ins = [in_channels, *channels[:-1]]
        self.stages = nn.ModuleList(conv_stage(i, o, residual=residual) for i, o in zip(ins, channels, strict=True))
        self.pool = nn.MaxPool2d(2, 2, return_indices=return_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
        features = [self.stages[0](x)]
        indices = []
        for stage in self.stages[1:]:
            pooled = self.pool(features[-1])
            if self.return_indices:
                pooled, idx = pooled
                indices.append(idx)
            features.append(stage(pooled))
        return (features, indices) if self.return_indices else features


def dilate_resnet_stage(layer: nn.Sequential, dilation: int, previous_dilation: int) -> None:
    """Turn a strided ResNet stage into a dilated one, in place (torchvision's convention)."""
    for block_index, block in enumerate(layer):
        d = previous_dilation if block_index == 0 else dilation
        for module in block.modules():
            if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                module.stride = (1, 1)
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                module.dilation = (d, d)
                module.padding = (d, d)


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB kernels -> ``in_channels`` kernels, keeping the response to a grey image.

    Fewer than three channels: the mean RGB kernel in every channel (the sum for one channel).
    More than three: the RGB kernels, then the mean RGB kernel for every extra channel. All are
    scaled by ``3 / in_channels``, so the kernel sum
    over channels is unchanged, so an image with the same value in every channel gives the
    response the RGB net gives to that grey image.
    """
    rgb = weight.shape[1]
    if in_channels == rgb:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    if in_channels < rgb:
        return mean.expand(-1, in_channels, -1, -1) * (rgb / in_channels)
    extra = mean.expand(-1, in_channels - rgb, -1, -1)
    return torch.cat([weight, extra], dim=1) * (rgb / in_channels)


class TorchvisionResNet(nn.Module):
    """torchvision ResNet as a 5-stage encoder (``/2, /4, /8, /16, /32`` before dilation).

    Args:
        name: ``resnet18 | resnet34 | resnet50``.
        in_channels: image channels (the stem conv is adapted, see ``adapt_first_conv_weight``).
        output_stride: 8, 16 or 32.
        pretrained: ``False`` (random init), ``True`` (torchvision's default ImageNet weights,
            downloaded), a torchvision weights name such as ``"IMAGENET1K_V1"``, or the path of a
            saved backbone ``state_dict`` that must fit exactly (``fc.*`` ignored; missing,
            unexpected or mis-shaped weights are a ``DataError`` naming the file).
    """

    def __init__(self, name: str, in_channels: int = 3, *, output_stride: int = 32, pretrained: bool | str = False) -> None:
        super().__init__()
        import torchvision

        weights = None
        if pretrained is True:
            weights = "DEFAULT"
        elif isinstance(pretrained, str) and not os.path.isfile(pretrained):
            weights = _torchvision_weights_name(name, pretrained)
        net = torchvision.models.get_model(name, weights=weights)
        if isinstance(pretrained, str) and os.path.isfile(pretrained):
            net.fc = nn.Identity()  # the classifier is not part of the encoder
            _load_weights_file(net, pretrained, f"encoder {name!r}")
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
            if pretrained:
                with torch.no_grad():
                    net.conv1.weight.copy_(adapt_first_conv_weight(old.weight, in_channels))
        PointwiseConv.replace_in(net)  # 1x1 convs (bottlenecks, down-sampling shortcuts) via oneDNN
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        last = TORCHVISION_RESNETS[name]
        self.out_channels = [64, last // 8, last // 4, last // 2, last]
        self.reductions = _apply_output_stride([self.layer3, self.layer4], output_stride)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stem(x)
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        return [f1, f2, f3, f4, self.layer4(f4)]


def _torchvision_weights_name(architecture: str, pretrained: str) -> str:
    """``pretrained`` when torchvision knows it as a weights name of ``architecture``.

    Raises:
        DataError: otherwise (``pretrained`` is then taken for a weights file that is not there).
    """
    import torchvision

    names = enum_names(torchvision.models.get_model_weights(architecture))
    if pretrained not in names:
        raise DataError(pretrained, f"weights file not found (pretrained: a file, or one of {', '.join(names)})")
    return pretrained


def _load_weights_file(module: nn.Module, path: str, what: str) -> None:
    """Load a saved ``state_dict`` (``weights_only``; ``fc.*`` ignored) that must fit ``module`` exactly.

    Raises:
        DataError: naming ``path``, when it does not load or its weights do not fit.
    """
    state = _read_weights_file(path)
    for key in [k for k in state if k.startswith("fc.")]:
        del state[key]
    problem = load_fitting_weights(module, state)
    if problem:
        raise DataError(path, f"weights do not fit {what}: {problem}")


def _read_weights_file(path: str) -> dict[str, torch.Tensor]:
    """A saved ``state_dict`` (``weights_only``), or a ``DataError`` naming ``path``."""
    if not os.path.isfile(path):
        raise DataError(path, "weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"unreadable weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "not a state_dict (a mapping of names to tensors)")
    return state


def _check_timm_weights_file(name: str, path: str) -> None:
    """Refuse a weights file that does not fit timm model ``name`` (timm itself loads a
    ``features_only`` model leniently: missing weights keep their random init, unnoticed).

    The file is compared with the whole model's ``state_dict`` (its classifier excepted).
    """
    import timm

    state = _read_weights_file(path)
    reference = timm.create_model(name, pretrained=False)
    classifiers = reference.pretrained_cfg.get("classifier") or ()
    prefixes = tuple(f"{c}." for c in ([classifiers] if isinstance(classifiers, str) else classifiers))
    own = {k: v for k, v in reference.state_dict().items() if not k.startswith(prefixes)}
    state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]  # optional, as for torch
    problem = describe_mismatch(missing, [k for k in state if k not in own], shapes)
    if problem:
        raise DataError(path, f"weights do not fit timm encoder {name!r}: {problem}")


def _apply_output_stride(last_two: list[nn.Sequential], output_stride: int) -> list[int]:
    """Dilate layer3/layer4 for output stride 8 or 16; return the stage reductions."""
    if output_stride == 32:
        return [2, 4, 8, 16, 32]
    if output_stride == 16:
        dilate_resnet_stage(last_two[1], 2, 1)
        return [2, 4, 8, 16, 16]
    if output_stride == 8:
        dilate_resnet_stage(last_two[0], 2, 1)
        dilate_resnet_stage(last_two[1], 4, 2)
        return [2, 4, 8, 8, 8]
    raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")


class TimmEncoder(nn.Module):
    """Any timm model with ``features_only=True`` (Wightman, pytorch-image-models).

    Args:
        name: a timm model name, e.g. ``"efficientnet_b0"``.
        in_channels: image channels (timm adapts pretrained stem weights itself).
        output_stride: 8, 16 or 32 (timm dilates; not every model supports it).
        pretrained: ``False``, ``True`` (download timm's default weights) or the path of a weights
            file for that model (loaded strictly through timm's ``pretrained_cfg_overlay``; a
            mismatch is a ``DataError`` naming the file).
    """

    def __init__(self, name: str, in_channels: int = 3, *, output_stride: int = 32, pretrained: bool | str = False) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ConfigError(
                f"unknown encoder {name!r}; valid choices: None (plain U-Net encoder), "
                f"{', '.join(TORCHVISION_RESNETS)}, or a timm model name (see timm.list_models())"
            )
        kwargs: dict = {"features_only": True, "in_chans": in_channels, "pretrained": bool(pretrained)}
        if isinstance(pretrained, str):
            _check_timm_weights_file(name, pretrained)
            kwargs["pretrained_cfg_overlay"] = {"file": pretrained}
        if output_stride != 32:
            kwargs["output_stride"] = output_stride
        try:
            self.model = timm.create_model(name, **kwargs)
        except RuntimeError as exc:  # timm loads a weights file strictly
            if not isinstance(pretrained, str):
                raise
            raise DataError(pretrained, f"weights do not fit timm encoder {name!r}: {summarise_load_error(str(exc))}") from None
        self.out_channels = list(self.model.feature_info.channels())
        self.reductions = list(self.model.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(x))


def create_encoder(
    encoder: str, in_channels: int = 3, *, output_stride: int = 32, pretrained: bool | str = False
) -> TorchvisionResNet | TimmEncoder:
    """Backbone by name: ``resnet18 | resnet34 | resnet50`` (torchvision) or a timm name.

    A ``"timm:"`` prefix forces timm (``"timm:resnet34"`` is timm's ResNet-34).
    """
    if encoder in TORCHVISION_RESNETS:
        return TorchvisionResNet(encoder, in_channels, output_stride=output_stride, pretrained=pretrained)
    return TimmEncoder(encoder.removeprefix("timm:"), in_channels, output_stride=output_stride, pretrained=pretrained)
