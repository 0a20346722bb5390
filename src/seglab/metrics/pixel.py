"""Pixel (semantic segmentation) metrics from a confusion matrix accumulated over a data set.

The matrix ``M`` is ``K x K`` with ``M[t, p]`` = number of pixels of target class ``t``
predicted as ``p``, built by one ``bincount`` of ``target * K + pred`` (pixels whose target is
``ignore_index`` are skipped). Per class ``c``: ``TP = M[c, c]``, ``FP = column sum - TP``,
``FN = row sum - TP``; then

* IoU (Jaccard) = TP / (TP + FP + FN), Dice (F1) = 2 TP / (2 TP + FP + FN),
* precision = TP / (TP + FP), recall = TP / (TP + FN),
* pixel accuracy = trace / total; mean IoU and mean Dice average over classes.

A class absent from both target and prediction (after ignore) has IoU and Dice NaN and is left
out of the means; a class present in only one of the two scores 0. Precision is NaN for a class never predicted, recall for a class never present.
"""

from __future__ import annotations

import numpy as np


def _split_pred(pred: object, target: object, num_classes: int):
    """Class-index prediction: take ``argmax`` over dim 1 when ``pred`` has scores per class."""
    p_ndim, t_ndim = len(getattr(pred, "shape", np.shape(pred))), len(getattr(target, "shape", np.shape(target)))
    if p_ndim == t_ndim + 1 and pred.shape[1] == num_classes:  # type: ignore[attr-defined]
        return pred.argmax(1)  # type: ignore[attr-defined]
    return pred


def _counts_torch(pred, target, num_classes: int, ignore_index: int | None) -> np.ndarray:
    import torch

    pred, target = torch.as_tensor(pred).reshape(-1).long(), torch.as_tensor(target).reshape(-1).long()
    target = target.to(pred.device)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_range(int(pred.min()) if pred.numel() else 0, int(pred.max()) if pred.numel() else 0, "pred", num_classes)
    _check_range(int(target.min()) if target.numel() else 0, int(target.max()) if target.numel() else 0, "target", num_classes)
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.cpu().numpy().reshape(num_classes, num_classes).astype(np.int64)


def _check_range(lo: int, hi: int, name: str, num_classes: int) -> None:
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} holds class {hi if hi >= num_classes else lo} outside 0..{num_classes - 1}")


def confusion_matrix(pred: object, target: object, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """The ``K x K`` confusion matrix (rows: target class, columns: predicted class).

    Args:
        pred: predicted class indices, numpy or torch, any shape; or per-class scores with one
            more dimension at axis 1 (``N x K x ...``), reduced by argmax.
        target: target class indices, same shape as the class-index prediction.
        num_classes: K.
        ignore_index: target value whose pixels are skipped; ``None`` to skip nothing.

    Returns:
        ``K x K`` int64 numpy array.

    Raises:
        ValueError: shapes differ, or a class index outside ``0..K-1`` (other than ignore).
    """
    pred = _split_pred(pred, target, num_classes)
    p_shape, t_shape = tuple(getattr(pred, "shape", np.shape(pred))), tuple(getattr(target, "shape", np.shape(target)))
    if p_shape != t_shape:
        raise ValueError(f"pred shape {p_shape} differs from target shape {t_shape}")
    if any(type(x).__module__.startswith("torch") for x in (pred, target)):
        return _counts_torch(pred, target, num_classes, ignore_index)
    p, t = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    _check_range(int(p.min(initial=0)), int(p.max(initial=0)), "pred", num_classes)
    _check_range(int(t.min(initial=0)), int(t.max(initial=0)), "target", num_classes)
    code = t.astype(np.int64) * num_classes + p
    return np.bincount(code, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_matrix(matrix: np.ndarray) -> dict:
    """Per-class IoU, Dice, precision, recall and the data-set means of a confusion matrix.

    Returns:
        ``{"iou", "dice", "precision", "recall"}`` (lists of K floats, NaN where undefined),
        ``"pixel_accuracy"``, ``"miou"``, ``"mean_dice"`` (floats; NaN when nothing was counted).
    """
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    total = m.sum()
    return {
        "iou": iou.tolist(),
        "dice": dice.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "miou": _nanmean(iou),
        "mean_dice": _nanmean(dice),
    }


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


class ConfusionMatrix:
    """Confusion-matrix accumulator over a data set (pooled over all pixels of all images).

    Args:
        num_classes: K.
        ignore_index: target value whose pixels are skipped (``None``: none).

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(logits.argmax(1), target)   # or cm.update(logits, target)
        >>> cm.compute()["miou"]
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self) -> None:
        """Zero the matrix."""
        self.matrix = np.zeros_like(self.matrix)

    def update(self, pred: object, target: object) -> None:
        """Add the pixels of ``pred`` against ``target`` (see :func:`confusion_matrix`)."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        """Scores of the accumulated matrix (see :func:`scores_from_matrix`)."""
        return scores_from_matrix(self.matrix)
