"""Lovasz losses (Berman et al. 2018) against smp and a hand-computed hinge.

Conventions matched: smp ``LovaszLoss`` applies softmax in multiclass mode and averages the
Lovasz-softmax over classes present in the (valid) target ("present"), over the whole batch or per
image (``per_image``); in binary mode it is the Lovasz hinge on logits. In multilabel mode smp
flattens all channels into ONE binary problem; we average the hinge over channels (one Jaccard
per class), so the test compares against smp applied channel by channel.
"""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from seglab.losses import LovaszLoss

torch.manual_seed(0)


def test_hinge_hand_value():
    # logits [2, -1, 0.5, -3], labels [1, 0, 0, 1]: errors 1 - s*y = [-1, 0, 1.5, 4]
    # sorted: 4 (fg), 1.5, 0, -1 (fg); Jaccard along the order [1/2, 2/3, 3/4, 1]
    # gradient [1/2, 1/6, 1/12, 1/4]; loss = 4 * 1/2 + 1.5 * 1/6 = 2.25
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    target = torch.tensor([[[1, 0], [0, 1]]])
    assert LovaszLoss(mode="binary")(logits, target).item() == pytest.approx(2.25)


@pytest.mark.parametrize("per_image", [False, True])
def test_softmax_matches_smp(per_image):
    logits = torch.randn(3, 4, 8, 8) * 2
    target = torch.randint(0, 3, (3, 8, 8))  # class 3 absent: "present" skips it
    target[0, 2:4] = 255
    ours = LovaszLoss(mode="multiclass", per_image=per_image, ignore_index=255)(logits, target)
    theirs = smp.losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=255)(
        logits, target
    )
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("per_image", [False, True])
def test_hinge_matches_smp(per_image):
    logits = torch.randn(3, 1, 8, 8) * 2
    target = (torch.rand(3, 1, 8, 8) > 0.6).long()
    target[1, :, :3] = 255
    ours = LovaszLoss(mode="binary", per_image=per_image, ignore_index=255)(logits, target)
    theirs = smp.losses.LovaszLoss("binary", per_image=per_image, ignore_index=255)(logits, target)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_multilabel_is_mean_of_channel_hinges():
    logits = torch.randn(2, 3, 8, 8)
    target = (torch.rand(2, 3, 8, 8) > 0.5).float()
    ours = LovaszLoss(mode="multilabel")(logits, target)
    smp_binary = smp.losses.LovaszLoss("binary", per_image=False)
    expected = torch.stack([smp_binary(logits[:, c], target[:, c]) for c in range(3)]).mean()
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
