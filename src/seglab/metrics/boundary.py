"""Boundary F1 (BF score, Csurka et al. 2013, "What is a good evaluation measure for semantic
segmentation?"): how well predicted class boundaries follow the reference ones.

For each class present, boundary pixels are the pixels of the class with a 4-neighbour of
another class (image borders are not boundaries). Precision is the share of predicted boundary
pixels within ``tolerance`` pixels (Euclidean) of a reference boundary pixel, recall the other
way round; BF is their harmonic mean. Per image, the classes' BF are averaged over the classes
present in the reference or the prediction; a class with no boundary on either side scores 1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def class_boundaries(label: np.ndarray, cls: int) -> np.ndarray:
    """Pixels of class ``cls`` with a 4-neighbour of another class, ``H x W`` bool."""
    inside = label == cls
    edge = np.zeros_like(inside)
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    return inside & edge


def _near(mask: np.ndarray, other: np.ndarray, tolerance: float) -> int:
    """How many pixels of ``mask`` lie within ``tolerance`` of a pixel of ``other``."""
    if not other.any():
        return 0
    distance = ndimage.distance_transform_edt(~other)
    return int((distance[mask] <= tolerance).sum())


def boundary_f1(target: np.ndarray, pred: np.ndarray, *, tolerance: float = 2.0, ignore_index: int | None = 255) -> float:
    """Mean over classes of the boundary F1 of one image.

    Args:
        target: ``H x W`` integer class map.
        pred: ``H x W`` integer class map.
        tolerance: match distance in pixels.
        ignore_index: reference value left out (those pixels are set to the prediction's class).
    """
    target = np.asarray(target)
    pred = np.asarray(pred)
    if ignore_index is not None:
        target = np.where(target == ignore_index, pred, target)
    scores = []
    for cls in np.union1d(np.unique(target), np.unique(pred)):
        gt_b, pr_b = class_boundaries(target, cls), class_boundaries(pred, cls)
        n_gt, n_pr = int(gt_b.sum()), int(pr_b.sum())
        if n_gt == 0 and n_pr == 0:
            scores.append(1.0)
            continue
        precision = _near(pr_b, gt_b, tolerance) / n_pr if n_pr else 0.0
        recall = _near(gt_b, pr_b, tolerance) / n_gt if n_gt else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return float(np.mean(scores)) if scores else 1.0
