"""Cross-entropy and focal loss against torch, MONAI, smp and hand-computed values.

Conventions matched:
- ``CrossEntropyLoss`` follows torch exactly: multiclass = ``F.cross_entropy`` (a class weight
  divides by the summed weights of the valid pixels), binary/multilabel =
  ``F.binary_cross_entropy_with_logits`` averaged over the valid elements.
- MONAI ``FocalLoss(use_softmax=True, to_onehot_y=True, reduction="none")`` returns an N x C x H x W
  map that is non-zero only in the target channel: summing over C and averaging over pixels gives
  the per-pixel mean we compute. Its sigmoid variant with a scalar ``alpha`` weights positives by
  alpha and negatives by 1 - alpha (Lin et al. 2017), averaged over all elements, like ours.
- smp ``FocalLoss(mode="binary", alpha, gamma)`` removes ignored pixels then averages: ours.
"""

from __future__ import annotations

import math

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from monai.losses import FocalLoss as MonaiFocal

from seglab.losses import CrossEntropyLoss, FocalLoss

torch.manual_seed(0)


def tiny():
    p1 = torch.tensor([[0.9, 0.2], [0.6, 0.3]])
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None]
    target = torch.tensor([[[1, 0], [0, 0]]])
    return logits, target  # probability of the true class: 0.9, 0.8, 0.4, 0.7


def test_hand_values():
    logits, target = tiny()
    pt = [0.9, 0.8, 0.4, 0.7]
    ce = CrossEntropyLoss(mode="multiclass")(logits, target).item()
    assert ce == pytest.approx(-sum(math.log(p) for p in pt) / 4, abs=1e-6)
    fl = FocalLoss(mode="multiclass", gamma=2.0)(logits, target).item()
    assert fl == pytest.approx(-sum((1 - p) ** 2 * math.log(p) for p in pt) / 4, abs=1e-6)
    # binary with alpha = 0.25 on positives (pixel 0 positive with p = 0.9, the others negative)
    bin_logits = logits[:, 1:] - logits[:, :1]
    bfl = FocalLoss(mode="binary", alpha=0.25, gamma=2.0)(bin_logits, target.float()).item()
    terms = [0.25 * 0.1**2 * -math.log(0.9)] + [0.75 * (1 - p) ** 2 * -math.log(p) for p in pt[1:]]
    assert bfl == pytest.approx(sum(terms) / 4, abs=1e-6)


def test_cross_entropy_matches_torch():
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, :3] = 255
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5])
    ours = CrossEntropyLoss(mode="multiclass", ignore_index=255, weight=weight)(logits, target)
    theirs = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    torch.testing.assert_close(ours, theirs)
    # multilabel: per-class weight and pos_weight broadcast over N x C x H x W like torch
    ml_target = (torch.rand(2, 4, 8, 8) > 0.5).float()
    pos_weight = torch.tensor([1.0, 3.0, 0.5, 2.0])
    ours = CrossEntropyLoss(mode="multilabel", weight=weight, pos_weight=pos_weight)(
        logits, ml_target
    )
    theirs = F.binary_cross_entropy_with_logits(
        logits, ml_target, weight=weight.view(1, 4, 1, 1), pos_weight=pos_weight.view(1, 4, 1, 1)
    )
    torch.testing.assert_close(ours, theirs)


def test_binary_cross_entropy_accepts_both_layouts():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], target)
    loss = CrossEntropyLoss(mode="binary")
    torch.testing.assert_close(loss(logits, target), expected)
    torch.testing.assert_close(loss(logits[:, 0], target), expected)
    torch.testing.assert_close(loss(logits, target[:, None]), expected)
    torch.testing.assert_close(loss(logits, target.long()), expected)


def test_multiclass_focal_matches_monai():
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    ours = FocalLoss(mode="multiclass", gamma=2.0)(logits, target)
    theirs = MonaiFocal(use_softmax=True, to_onehot_y=True, gamma=2.0, reduction="none")(
        logits, target[:, None]
    )
    torch.testing.assert_close(ours, theirs.sum(1).mean(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_matches_monai_and_smp(alpha):
    logits = torch.randn(2, 3, 8, 8) * 3
    target = (torch.rand(2, 3, 8, 8) > 0.7).float()
    ours = FocalLoss(mode="multilabel", alpha=alpha, gamma=2.0)(logits, target)
    monai = MonaiFocal(use_softmax=False, gamma=2.0, alpha=alpha, reduction="mean")(logits, target)
    torch.testing.assert_close(ours, monai, atol=1e-6, rtol=1e-5)
    theirs = smp.losses.FocalLoss("multilabel", alpha=alpha, gamma=2.0)(logits, target)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_binary_focal_ignore_matches_smp():
    logits = torch.randn(2, 1, 8, 8) * 3
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    target[:, :, :2] = 255
    ours = FocalLoss(mode="binary", alpha=0.25, gamma=2.0, ignore_index=255)(logits, target)
    theirs = smp.losses.FocalLoss("binary", alpha=0.25, gamma=2.0, ignore_index=255)(logits, target)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel", "binary"])
def test_focal_gamma_zero_is_cross_entropy(mode):
    c = 1 if mode == "binary" else 3
    logits = torch.randn(2, c, 8, 8)
    if mode == "multiclass":
        target = torch.randint(0, 3, (2, 8, 8))
        target[1, 4:] = 255
    else:
        target = (torch.rand(2, c, 8, 8) > 0.5).float()
        target[1, :, 4:] = 255
    weight = None if mode == "binary" else torch.tensor([0.5, 2.0, 1.0])
    focal = FocalLoss(mode=mode, gamma=0.0, ignore_index=255, weight=weight)(logits, target)
    ce = CrossEntropyLoss(mode=mode, ignore_index=255, weight=weight)(logits, target)
    torch.testing.assert_close(focal, ce)


def test_from_logits_false():
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    for cls in (CrossEntropyLoss, FocalLoss):
        a = cls(mode="multiclass")(logits, target)
        b = cls(mode="multiclass", from_logits=False)(logits.softmax(1), target)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    a = CrossEntropyLoss(mode="binary")(logits[:, :1], target[:, None].clamp(max=1))
    b = CrossEntropyLoss(mode="binary", from_logits=False)(
        logits[:, :1].sigmoid(), target[:, None].clamp(max=1)
    )
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_all_pixels_ignored_gives_zero_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 255)
    for cls in (CrossEntropyLoss, FocalLoss):
        loss = cls(mode="multiclass", ignore_index=255)(logits, target)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.isfinite(logits.grad).all()
