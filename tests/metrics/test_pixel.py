"""Confusion-matrix metrics against a hand example, per-class loops and torchmetrics."""

import numpy as np
import pytest
import torch

from seglab.metrics import ConfusionMatrix, confusion_matrix


def test_hand_example():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    cm = confusion_matrix(pred, target, 4, ignore_index=255)
    want = np.zeros((4, 4), int)
    want[0, 0], want[0, 1], want[1, 1], want[2, 0] = 1, 1, 2, 1  # rows: target, columns: pred
    np.testing.assert_array_equal(cm, want)
    acc = ConfusionMatrix(4)
    acc.update(pred, target)
    r = acc.compute()
    # class 0: tp 1, fp 1 (pred 0 at target 2), fn 1 -> IoU 1/3, Dice 2/4
    # class 1: tp 2, fp 1, fn 0 -> IoU 2/3, Dice 4/5; class 2: tp 0, fn 1 -> 0; class 3 absent -> NaN
    np.testing.assert_allclose(r["iou"][:3], [1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(r["dice"][:3], [0.5, 0.8, 0.0])
    np.testing.assert_allclose(r["precision"][:2], [0.5, 2 / 3])
    assert np.isnan(r["precision"][2])  # never predicted
    np.testing.assert_allclose(r["recall"][:3], [0.5, 1.0, 0.0])
    assert np.isnan(r["iou"][3]) and np.isnan(r["dice"][3])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert r["mean_dice"] == pytest.approx((0.5 + 0.8) / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)


def _loop_reference(preds, targets, k, ignore):
    """Per-class counts by boolean masks, summed over images."""
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    correct = total = 0
    for p, t in zip(preds, targets, strict=True):
        valid = t != ignore
        for c in range(k):
            tp[c] += np.sum((p == c) & (t == c) & valid)
            fp[c] += np.sum((p == c) & (t != c) & valid)
            fn[c] += np.sum((p != c) & (t == c) & valid)
        correct += np.sum((p == t) & valid)
        total += valid.sum()
    return tp, fp, fn, correct / total


def test_random_against_loops_and_torchmetrics():
    from torchmetrics.classification import (
        MulticlassF1Score,
        MulticlassJaccardIndex,
        MulticlassPrecision,
        MulticlassRecall,
    )

    rng = np.random.default_rng(0)
    k = 5
    targets = rng.integers(0, k, (3, 20, 24))
    targets[rng.random(targets.shape) < 0.1] = 255
    preds = np.where(rng.random(targets.shape) < 0.6, np.minimum(targets, k - 1), rng.integers(0, k, targets.shape))
    acc = ConfusionMatrix(k)
    for p, t in zip(preds, targets, strict=True):
        acc.update(torch.from_numpy(p), t)  # torch and numpy mixed
    r = acc.compute()
    tp, fp, fn, pa = _loop_reference(preds, targets, k, 255)
    np.testing.assert_allclose(r["iou"], tp / (tp + fp + fn))
    np.testing.assert_allclose(r["dice"], 2 * tp / (2 * tp + fp + fn))
    assert r["pixel_accuracy"] == pytest.approx(pa)

    tm_args = {"num_classes": k, "ignore_index": 255, "average": None}
    p_t, t_t = torch.from_numpy(preds), torch.from_numpy(targets)
    np.testing.assert_allclose(r["iou"], MulticlassJaccardIndex(**tm_args)(p_t, t_t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(r["dice"], MulticlassF1Score(**tm_args, multidim_average="global")(p_t, t_t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(r["precision"], MulticlassPrecision(**tm_args)(p_t, t_t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(r["recall"], MulticlassRecall(**tm_args)(p_t, t_t).numpy(), rtol=1e-6)
    assert r["miou"] == pytest.approx(float(MulticlassJaccardIndex(num_classes=k, ignore_index=255)(p_t, t_t)), rel=1e-6)


def test_logits_reset_and_errors():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    acc = ConfusionMatrix(3, ignore_index=None)
    acc.update(logits, target)
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(logits.argmax(1), target, 3, ignore_index=None))
    assert acc.matrix.sum() == 32
    acc.reset()
    assert acc.matrix.sum() == 0 and np.isnan(acc.compute()["miou"])
    with pytest.raises(ValueError, match="class"):
        acc.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="class"):
        acc.update(np.array([0, 1]), np.array([0, 255]))  # 255 is not ignored here
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
