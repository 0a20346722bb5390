"""Dice, Jaccard, Tversky and generalised Dice: hand-computed values and peer libraries.

Conventions matched (read from the peers' source):
- smp ``DiceLoss``/``JaccardLoss``/``TverskyLoss`` sum over batch and pixels (dims=(0, 2)) and
  compute ``(I + smooth) / (I + a*FP + b*FN + smooth)`` with (a, b) = (.5, .5), (1, 1), (alpha, beta),
  exactly our formula; they then zero the loss of classes absent from the target and take the mean
  over ALL classes, so with absent classes smp = ours("present") * n_present / C.
- MONAI ``DiceLoss`` computes ``1 - (2I + s_nr) / (P + T + s_dr)``, so our ``smooth=s`` equals
  MONAI's ``smooth_nr = smooth_dr = 2 s``; ``batch=True`` sums over the batch like our default,
  ``batch=False`` is our ``per_image=True``; MONAI averages over all classes = ``average="all"``.
- MONAI ``TverskyLoss``: ``1 - (I + s_nr) / (I + a FP + b FN + s_dr)``: our ``smooth=s`` equals
  ``smooth_nr = smooth_dr = s``.
- MONAI ``GeneralizedDiceLoss``: ``1 - (2 sum w I + s_nr) / (sum w (P + T) + s_dr)``, w = 1/T^2, an
  absent class takes the largest weight of the present ones; ``batch=False`` averages per image.
"""

from __future__ import annotations

import math

import pytest
import segmentation_models_pytorch as smp
import torch
from monai.losses import DiceLoss as MonaiDice
from monai.losses import GeneralizedDiceLoss as MonaiGDL
from monai.losses import TverskyLoss as MonaiTversky

from seglab.losses import DiceLoss, GeneralizedDiceLoss, JaccardLoss, TverskyLoss

torch.manual_seed(0)


def tiny_multiclass() -> tuple[torch.Tensor, torch.Tensor]:
    """1 x 2 x 2 x 2 logits with known softmax probabilities and a 1 x 2 x 2 target.

    Class-1 probabilities [0.9, 0.2, 0.6, 0.3]; target class-1 only at the first pixel.
    """
    p1 = torch.tensor([[0.9, 0.2], [0.6, 0.3]])
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None]
    target = torch.tensor([[[1, 0], [0, 0]]])
    return logits, target


# class 1: I = 0.9, P = 2.0, T = 1  -> FP = 1.1, FN = 0.1
# class 0: p0 = [0.1, 0.8, 0.4, 0.7], t0 = [0, 1, 1, 1] -> I = 1.9, P = 2.0, T = 3, FP = 0.1, FN = 1.1
HAND = {"I": (1.9, 0.9), "FP": (0.1, 1.1), "FN": (1.1, 0.1)}


def hand_tversky(a: float, b: float) -> float:
    scores = [
        i / (i + a * fp + b * fn)
        for i, fp, fn in zip(HAND["I"], HAND["FP"], HAND["FN"], strict=True)
    ]
    return 1 - sum(scores) / 2


def test_hand_values_multiclass():
    logits, target = tiny_multiclass()
    dice = DiceLoss(mode="multiclass")(logits, target)
    assert dice.item() == pytest.approx(1 - (2 * 1.9 / 5 + 2 * 0.9 / 3) / 2, abs=1e-6)
    assert dice.item() == pytest.approx(hand_tversky(0.5, 0.5), abs=1e-6)
    jac = JaccardLoss(mode="multiclass")(logits, target)
    assert jac.item() == pytest.approx(1 - (1.9 / 3.1 + 0.9 / 2.1) / 2, abs=1e-6)
    tv = TverskyLoss(mode="multiclass", alpha=0.3, beta=0.7)(logits, target)
    assert tv.item() == pytest.approx(1 - (1.9 / (1.9 + 0.03 + 0.77) + 0.9 / 1.3) / 2, abs=1e-6)
    log_dice = DiceLoss(mode="multiclass", log_loss=True)(logits, target)
    assert log_dice.item() == pytest.approx(-(math.log(3.8 / 5) + math.log(1.8 / 3)) / 2, abs=1e-6)
    # generalised Dice: w0 = 1/3^2, w1 = 1/1^2
    gdl = GeneralizedDiceLoss(mode="multiclass")(logits, target)
    expected = 1 - 2 * (1.9 / 9 + 0.9) / ((2.0 + 3) / 9 + (2.0 + 1))
    assert gdl.item() == pytest.approx(expected, abs=1e-6)


def test_hand_values_binary():
    # sigmoid probabilities [0.9, 0.2, 0.6, 0.3], target [1, 0, 1, 0]: I = 1.5, P = 2.0, T = 2
    p = torch.tensor([[0.9, 0.2], [0.6, 0.3]])
    logits = torch.log(p / (1 - p))[None, None]
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert DiceLoss(mode="binary")(logits, target).item() == pytest.approx(1 - 3.0 / 4, abs=1e-6)
    assert JaccardLoss(mode="binary")(logits, target).item() == pytest.approx(
        1 - 1.5 / 2.5, abs=1e-6
    )
    # smooth enters numerator and denominator once: (I + s) / (I + FP/2 + FN/2 + s)
    smoothed = DiceLoss(mode="binary", smooth=1.0)(logits, target).item()
    assert smoothed == pytest.approx(1 - 2.5 / (1.5 + 0.25 + 0.25 + 1.0), abs=1e-6)
    # binary GDL (Sudre et al.): foreground and background both enter, w_fg = w_bg = 1/2^2
    gdl = GeneralizedDiceLoss(mode="binary")(logits, target).item()
    assert gdl == pytest.approx(1 - 2 * (1.5 + 1.5) / ((2 + 2) + (2 + 2)), abs=1e-6)


def random_batch(mode: str, n: int = 2, c: int = 3, size: int = 8):
    logits = torch.randn(n, c, size, size) * 2
    if mode == "multiclass":
        target = torch.randint(0, c, (n, size, size))
        target[:, 0, :c] = torch.arange(c)  # every class present in every image
    elif mode == "multilabel":
        target = (torch.rand(n, c, size, size) > 0.6).float()
        target[:, :, 0, 0] = 1
    else:
        logits = logits[:, :1]
        target = (torch.rand(n, 1, size, size) > 0.6).float()
        target[:, :, 0, 0] = 1
    return logits, target


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_jaccard_tversky_match_smp(mode, smooth):
    logits, target = random_batch(mode)
    pairs = [
        (DiceLoss(mode=mode, smooth=smooth), smp.losses.DiceLoss(mode, smooth=smooth)),
        (JaccardLoss(mode=mode, smooth=smooth), smp.losses.JaccardLoss(mode, smooth=smooth)),
        (
            TverskyLoss(mode=mode, smooth=smooth, alpha=0.3, beta=0.7),
            smp.losses.TverskyLoss(mode, smooth=smooth, alpha=0.3, beta=0.7),
        ),
        (
            DiceLoss(mode=mode, smooth=smooth, log_loss=True),
            smp.losses.DiceLoss(mode, smooth=smooth, log_loss=True),
        ),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(
            ours(logits, target), theirs(logits, target), atol=1e-6, rtol=1e-5
        )


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_dice_ignore_index_matches_smp(mode):
    logits, target = random_batch(mode)
    target = target.long() if mode == "multiclass" else target
    target[:, ..., 5:, :] = 255
    ours = DiceLoss(mode=mode, ignore_index=255)(logits, target)
    theirs = smp.losses.DiceLoss(mode, ignore_index=255)(logits, target)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_absent_class_present_average_relates_to_smp():
    logits, _ = random_batch("multiclass", c=4)
    target = torch.randint(0, 3, (2, 8, 8))  # class 3 absent
    ours = DiceLoss(mode="multiclass")(logits, target)
    theirs = smp.losses.DiceLoss("multiclass")(logits, target)
    # smp zeroes the absent class and divides by all 4 classes; we average the 3 present ones
    torch.testing.assert_close(ours * 3 / 4, theirs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("per_image", [False, True])
def test_dice_all_classes_matches_monai(per_image):
    logits, _ = random_batch("multiclass", c=4)
    target = torch.randint(0, 3, (2, 8, 8))  # class 3 absent: "all" still averages it in
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    ours = DiceLoss(
        mode="multiclass", average="all", smooth=0.5, per_image=per_image, weight=weight
    )
    theirs = MonaiDice(
        softmax=True,
        to_onehot_y=True,
        include_background=True,
        batch=not per_image,
        smooth_nr=1.0,
        smooth_dr=1.0,
        weight=weight,
    )
    torch.testing.assert_close(
        ours(logits, target), theirs(logits, target[:, None]), atol=1e-6, rtol=1e-5
    )


def test_dice_multilabel_sigmoid_matches_monai():
    logits, target = random_batch("multilabel")
    ours = DiceLoss(mode="multilabel", average="all", smooth=1e-5)
    theirs = MonaiDice(sigmoid=True, batch=True, smooth_nr=2e-5, smooth_dr=2e-5)
    torch.testing.assert_close(ours(logits, target), theirs(logits, target), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("per_image", [False, True])
def test_tversky_matches_monai(per_image):
    logits, target = random_batch("multiclass")
    ours = TverskyLoss(
        mode="multiclass", alpha=0.3, beta=0.7, smooth=1e-5, average="all", per_image=per_image
    )
    theirs = MonaiTversky(
        softmax=True,
        to_onehot_y=True,
        alpha=0.3,
        beta=0.7,
        batch=not per_image,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )
    torch.testing.assert_close(
        ours(logits, target), theirs(logits, target[:, None]), atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("absent", [False, True])
def test_generalized_dice_matches_monai(per_image, absent):
    logits, target = random_batch("multiclass", c=4)
    if absent:
        target = torch.randint(0, 3, (2, 8, 8))  # class 3 absent: takes the largest present weight
    ours = GeneralizedDiceLoss(mode="multiclass", per_image=per_image, smooth=1e-5)
    theirs = MonaiGDL(
        softmax=True, to_onehot_y=True, batch=not per_image, smooth_nr=1e-5, smooth_dr=1e-5
    )
    torch.testing.assert_close(
        ours(logits, target), theirs(logits, target[:, None]), atol=1e-6, rtol=1e-5
    )


def test_generalized_dice_binary_matches_monai_two_channels():
    logits, target = random_batch("binary")
    ours = GeneralizedDiceLoss(mode="binary", smooth=1e-5)(logits, target)
    p = torch.sigmoid(logits)
    two = torch.cat([1 - p, p], dim=1)
    theirs = MonaiGDL(batch=True, smooth_nr=1e-5, smooth_dr=1e-5)(
        two, torch.cat([1 - target, target], 1)
    )
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_from_logits_false_takes_probabilities():
    logits, target = random_batch("multiclass")
    a = DiceLoss(mode="multiclass")(logits, target)
    b = DiceLoss(mode="multiclass", from_logits=False)(logits.softmax(1), target)
    torch.testing.assert_close(a, b)


def test_average_all_needs_smoothing():
    from seglab.errors import ConfigError

    with pytest.raises(ConfigError, match="smooth"):
        DiceLoss(mode="multiclass", average="all")
