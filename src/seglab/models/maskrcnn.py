"""Mask R-CNN (He et al., ICCV 2017) through torchvision, sized for nuclei.

Detect-then-segment: a backbone with a feature pyramid (Lin et al. 2017) feeds a region proposal
network, RoIAlign crops each proposal's features, and three heads predict the box, the class and
a 28 x 28 mask per detection. torchvision provides every part; this module only wires them:

* backbones ``resnet50_fpn`` (the paper's), ``resnet18_fpn`` and ``mobilenet_v3_fpn`` (lighter,
  for CPUs), with random weights unless ``pretrained=True`` (which needs the weight download);
* any number of input channels: the first convolution is replaced, and the transform's
  ``image_mean`` / ``image_std`` get one value per channel;
* native resolution by default (``min_size=None``): torchvision would rescale every image so its
  short side is 800 px, which for nuclei at a fixed magnification only costs time; the anchors
  (8 to 128 px) fit nuclei of 4-40 px radius instead of COCO objects.

The model takes a list of ``C x H x W`` float images in [0, 1]; in training mode it also takes the
targets (see :func:`seglab.data.detection.instances_to_target`) and returns a dict of losses; in
eval mode it returns one dict per image with ``boxes``, ``labels``, ``scores`` and ``masks``
(``K x 1 x H x W`` probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import misc as misc_ops
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from seglab.errors import ConfigError, unknown_choice

BACKBONES = ("resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn")
NUCLEI_ANCHORS = (8, 16, 32, 64, 128)  # one size per pyramid level (P2..P5, pool)
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class NativeResolutionTransform(GeneralizedRCNNTransform):
    """torchvision's transform (normalise, batch with padding) without the resize step."""

    def resize(self, image, target=None):  # noqa: D102 - same contract as the parent
        return image, target


def _weights(backbone: str, pretrained: bool):
    if not pretrained:
        return None
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights, ResNet50_Weights

    return {"resnet50_fpn": ResNet50_Weights, "resnet18_fpn": ResNet18_Weights,
            "mobilenet_v3_fpn": MobileNet_V3_Large_Weights}[backbone].DEFAULT


def _backbone(name: str, pretrained: bool, trainable_layers: int | None, fpn_channels: int, frozen_bn: bool) -> nn.Module:
    body = _torchvision_backbone(name, pretrained, trainable_layers, frozen_bn)
    if fpn_channels != body.out_channels:  # torchvision's builders fix the pyramid at 256 channels
        inputs = [block[0].in_channels for block in body.fpn.inner_blocks]
        body.fpn = FeaturePyramidNetwork(inputs, fpn_channels, extra_blocks=LastLevelMaxPool())
        body.out_channels = fpn_channels
    return body


def _torchvision_backbone(name: str, pretrained: bool, trainable_layers: int | None, frozen_bn: bool) -> nn.Module:
    # untrained backbones learn their batch-norm statistics (as torchvision does without weights)
    norm = misc_ops.FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    weights = _weights(name, pretrained)
    if name.startswith("resnet"):
        layers = 5 if trainable_layers is None and not pretrained else (trainable_layers or 3)
        return resnet_fpn_backbone(backbone_name=name.removesuffix("_fpn"), weights=weights, norm_layer=norm,
                                   trainable_layers=layers)
    layers = 6 if trainable_layers is None and not pretrained else (trainable_layers or 3)
    # stages 1, 2, 3, 5 of MobileNetV3-Large have strides 4, 8, 16, 32, like ResNet's C2-C5
    return mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=weights, fpn=True, norm_layer=norm,
                              trainable_layers=layers, returned_layers=[1, 2, 3, 5])


def _first_conv(backbone: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding the first convolution and that convolution's attribute name."""
    body = backbone.body
    return (body, "conv1") if name.startswith("resnet") else (getattr(body, "0"), "0")


def _set_in_channels(backbone: nn.Module, name: str, in_channels: int) -> None:
    """Replace the first convolution so the backbone takes ``in_channels`` channels.

    Pretrained RGB filters are averaged over the colour channels and repeated (scaled by
    ``3 / in_channels``), so a grey or multi-channel image gets a comparable response.
    """
    parent, attr = _first_conv(backbone, name)
    old = parent[int(attr)] if attr.isdigit() else getattr(parent, attr)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight.mean(1, keepdim=True).repeat(1, in_channels, 1, 1) * 3.0 / in_channels)
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)


class MaskRCNNModel(MaskRCNN):
    """torchvision's Mask R-CNN with seglab's keyword-only configuration.

    Args:
        in_channels: image channels (1 grey, 3 RGB, 4 ...).
        num_classes: classes including background (2 = background + nucleus).
        backbone: one of :data:`BACKBONES`.
        pretrained: start from ImageNet backbone weights (downloads them; off by default).
        frozen_batchnorm: the backbone's batch norm frozen (``FrozenBatchNorm2d``, another state
            dict than ``BatchNorm2d``); default: when ``pretrained``. A trained pretrained model is
            rebuilt with ``pretrained=False, frozen_batchnorm=True`` (no download).
        min_size, max_size: torchvision's rescaling of each image (short side to ``min_size``,
            long side at most ``max_size``); ``None`` keeps the native resolution.
        image_mean, image_std: per-channel normalisation of [0, 1] images (default ImageNet for 3
            channels, 0.5 / 0.25 otherwise).
        anchor_sizes: one anchor size per pyramid level (5 levels), aspect ratios 0.5, 1, 2.
        detections_per_image: at most this many detections per image.
        box_score_threshold: detections scoring lower are dropped inside the model (torchvision's
            ``box_score_thresh``, 0.05 there; 0.3 here: instance maps keep only confident ones,
            and pasting hundreds of weak masks of an untrained model slows validation).
        trainable_layers: backbone stages to train (default: all without pretrained weights, 3 with).
        rois_per_image: proposals sampled per image to train the box and mask heads (512 in the
            paper; 64-128 trains several times faster on a CPU, nuclei tiles have < 100 objects).
        representation_size: width of the box head's two fully connected layers (1024 in the
            paper; the first layer alone has 12.8 M weights, 256 is a light CPU choice).
        mask_channels: width of the mask head's four 3 x 3 convolutions (256 in the paper).
        fpn_channels: width of the feature pyramid (256 in the paper; its 3 x 3 output convs at
            1/4 resolution cost more than a ResNet-18 body, so a CPU run may take 64-128).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 2,
        backbone: str = "resnet50_fpn",
        pretrained: bool = False,
        frozen_batchnorm: bool | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        anchor_sizes: Sequence[int] = NUCLEI_ANCHORS,
        detections_per_image: int = 300,
        box_score_threshold: float = 0.3,
        trainable_layers: int | None = None,
        rois_per_image: int = 512,
        representation_size: int = 1024,
        mask_channels: int = 256,
        fpn_channels: int = 256,
    ) -> None:
        if backbone not in BACKBONES:
            raise unknown_choice("Mask R-CNN backbone", backbone, BACKBONES)
        if in_channels < 1 or num_classes < 2 or len(anchor_sizes) != 5:
            raise ConfigError("Mask R-CNN needs in_channels >= 1, num_classes >= 2 (with background), 5 anchor sizes")
        if fpn_channels < 1:
            raise ConfigError(f"fpn_channels must be >= 1, got {fpn_channels}")
        frozen = pretrained if frozen_batchnorm is None else frozen_batchnorm
        body = _backbone(backbone, pretrained, trainable_layers, fpn_channels, bool(frozen))
        if in_channels != 3:
            _set_in_channels(body, backbone, in_channels)
        mean = list(image_mean) if image_mean is not None else (_IMAGENET_MEAN if in_channels == 3 else [0.5] * in_channels)
        std = list(image_std) if image_std is not None else (_IMAGENET_STD if in_channels == 3 else [0.25] * in_channels)
        if len(mean) != in_channels or len(std) != in_channels:
            raise ConfigError(f"image_mean and image_std need {in_channels} values, got {len(mean)} and {len(std)}")
        anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
        native = min_size is None
        lo = 800 if native else int(min_size)
        hi = (1333 if native else max(lo, round(lo * 1333 / 800))) if max_size is None else int(max_size)
        width = body.out_channels
        super().__init__(body, num_classes=None, min_size=lo, max_size=hi, image_mean=mean, image_std=std,
                         rpn_anchor_generator=anchors, box_detections_per_img=detections_per_image,
                         box_score_thresh=box_score_threshold, box_batch_size_per_image=rois_per_image,
                         box_head=TwoMLPHead(width * 7 * 7, representation_size),
                         box_predictor=FastRCNNPredictor(representation_size, num_classes),
                         mask_head=MaskRCNNHeads(width, [mask_channels] * 4, 1),
                         mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes))
        if native:
            self.transform = NativeResolutionTransform(lo, hi, mean, std)
        self.in_channels, self.num_classes, self.backbone_name = in_channels, num_classes, backbone


def build_maskrcnn(**kwargs: Any) -> MaskRCNNModel:
    """Build :class:`MaskRCNNModel` (see it for every option and its default)."""
    return MaskRCNNModel(**kwargs)
