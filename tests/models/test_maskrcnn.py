"""Mask R-CNN wiring: torchvision's own maskrcnn_resnet50_fpn state dict loads into ours, every
backbone trains and predicts on 64 x 64 images, 1 and 4 channels, native resolution."""

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from seglab.data.detection import batch_to_targets
from seglab.data.synthetic import synth_tile
from seglab.errors import ConfigError
from seglab.models.maskrcnn import BACKBONES, MaskRCNNModel, build_maskrcnn

LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def _data(channels=3, n=2, size=64):
    torch.manual_seed(0)
    inst = torch.stack([torch.from_numpy(synth_tile(size, seed=s)[1]).long() for s in range(n)])
    inst[1] = 0  # an image without instances
    return [torch.rand(channels, size, size) for _ in range(n)], batch_to_targets(inst)


def test_same_architecture_as_torchvision_resnet50():
    ours = build_maskrcnn(backbone="resnet50_fpn", num_classes=2)
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize(("backbone", "channels"), [("resnet18_fpn", 3), ("mobilenet_v3_fpn", 1), ("resnet18_fpn", 4)])
def test_train_and_eval(backbone, channels):
    model = build_maskrcnn(backbone=backbone, in_channels=channels, detections_per_image=5, rois_per_image=32,
                           representation_size=64, mask_channels=16)
    images, targets = _data(channels)
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first = model.backbone.body.conv1 if backbone.startswith("resnet") else model.backbone.body["0"][0]
    assert first.in_channels == channels and first.weight.grad is not None
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        k = len(det["scores"])
        assert k <= 5 and det["boxes"].shape == (k, 4) and det["masks"].shape == (k, 1, 64, 64)


@pytest.mark.parametrize(("backbone", "channels", "fpn"), [("mobilenet_v3_fpn", 1, 256), ("resnet18_fpn", 4, 256),
                                                             ("resnet18_fpn", 3, 32), ("mobilenet_v3_fpn", 3, 48)])
def test_backbones_take_any_channels_and_give_strides_4_to_64(backbone, channels, fpn):
    model = build_maskrcnn(backbone=backbone, in_channels=channels, fpn_channels=fpn).eval()
    with torch.no_grad():
        features = model.backbone(torch.rand(1, channels, 64, 64))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [f.shape[-1] for f in features.values()] == [16, 8, 4, 2, 1]
    assert all(f.shape[1] == fpn for f in features.values())
    assert model.backbone.out_channels == fpn


def test_native_resolution_and_resizing():
    images, _ = _data()
    native = build_maskrcnn(backbone="resnet18_fpn").eval()
    assert native.transform(images)[0].image_sizes == [(64, 64), (64, 64)]
    resized = build_maskrcnn(backbone="resnet18_fpn", min_size=128, max_size=200).eval()
    assert resized.transform(images)[0].image_sizes == [(128, 128), (128, 128)]
    # normalisation by the given per-channel statistics
    model = build_maskrcnn(backbone="resnet18_fpn", in_channels=1, image_mean=[0.2], image_std=[0.5]).eval()
    x = torch.rand(1, 32, 32)
    torch.testing.assert_close(model.transform([x])[0].tensors[0, :, :32, :32], (x - 0.2) / 0.5)


def test_bad_options():
    with pytest.raises(ConfigError):
        MaskRCNNModel(backbone="vgg16")
    with pytest.raises(ConfigError):
        MaskRCNNModel(backbone="resnet18_fpn", in_channels=2, image_mean=[0.5])
    with pytest.raises(ConfigError, match="fpn_channels"):
        MaskRCNNModel(backbone="resnet18_fpn", fpn_channels=0)
    assert set(BACKBONES) == {"resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn"}
