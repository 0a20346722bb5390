"""Instance segmentation metrics: AJI, AJI+, panoptic quality (things), object F1, foreground Dice.

All metrics read one :func:`~seglab.metrics.overlap.pair_overlaps` table (areas and the
intersections of overlapping pairs, by bincount); none loops over pixels or over all pairs.

Inputs are instance label maps (numpy or torch, any integer dtype, any equal shape) with 0 as
background; ids need not be contiguous nor start at 1.

Conventions (the same for every metric here):

* both maps empty scores 1.0 (AJI, AJI+, PQ, SQ, DQ, F1, precision, recall, Dice);
* one map empty and the other not scores 0.0;
* when some instances exist but none is matched, SQ is 0.0 (as panopticapi).

References:
    Kumar et al. 2017, "A Dataset and a Technique for Generalized Nuclear Segmentation for
    Computational Pathology", IEEE TMI (AJI; MoNuSeg). Graham et al. 2019, "HoVer-Net", MedIA
    (AJI+). Kirillov et al. 2019, "Panoptic Segmentation", CVPR (PQ = SQ x DQ).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seglab.metrics.matching import best_per_gt, one_to_one
from seglab.metrics.overlap import Overlaps, pair_overlaps


def ratio(num: float, den: float, empty: float = 1.0) -> float:
    """``num / den``, or ``empty`` when ``den`` is 0 (nothing to score)."""
    return float(num) / float(den) if den else float(empty)


def aji_sums(ov: Overlaps) -> tuple[int, int]:
    """AJI numerator C and denominator U (Kumar et al. 2017).

    Each ground-truth instance takes its largest-IoU prediction (ties: smaller prediction id)
    and adds that pair's intersection to C and union to U; a ground truth without any overlap
    adds its area to U; predictions never taken add their areas to U.
    """
    best = best_per_gt(ov)
    taken_g = np.zeros(ov.num_gt, bool)
    taken_g[ov.pair_gt[best]] = True
    taken_p = np.zeros(ov.num_pred, bool)
    taken_p[ov.pair_pred[best]] = True
    c = int(ov.inter[best].sum())
    u = int(ov.union[best].sum() + ov.gt_area[~taken_g].sum() + ov.pred_area[~taken_p].sum())
    return c, u


def aji_plus_sums(ov: Overlaps) -> tuple[int, int]:
    """AJI+ numerator and denominator (Graham et al. 2019): AJI with one-to-one pairs.

    Pairs are the one-to-one matching of maximal total IoU (see
    :func:`~seglab.metrics.matching.one_to_one`); every unpaired instance, ground truth or
    prediction, adds its area to the denominator.
    """
    pairs = one_to_one(ov)
    paired_g = np.zeros(ov.num_gt, bool)
    paired_g[ov.pair_gt[pairs]] = True
    paired_p = np.zeros(ov.num_pred, bool)
    paired_p[ov.pair_pred[pairs]] = True
    c = int(ov.inter[pairs].sum())
    u = int(ov.union[pairs].sum() + ov.gt_area[~paired_g].sum() + ov.pred_area[~paired_p].sum())
    return c, u


def match_stats(ov: Overlaps, iou_threshold: float = 0.5) -> tuple[int, int, int, float]:
    """True positives, false positives, false negatives and the IoU sum of the matches.

    A pair matches when its IoU is strictly greater than ``iou_threshold`` (Kirillov et al.).
    For thresholds >= 0.5 such pairs are unique by construction; below 0.5 the pairs are first
    made one to one by maximal total IoU (``linear_sum_assignment``, as HoVer-Net and MONAI do),
    then pairs at or below the threshold are dropped.
    """
    if iou_threshold >= 0.5:
        matched = np.flatnonzero(ov.iou > iou_threshold)
    else:
        pairs = one_to_one(ov)
        matched = pairs[ov.iou[pairs] > iou_threshold]
    tp = len(matched)
    return tp, ov.num_pred - tp, ov.num_gt - tp, float(ov.iou[matched].sum())


def pq_from_stats(tp: float, fp: float, fn: float, iou_sum: float) -> dict[str, float]:
    """PQ, SQ and DQ from match counts (empty: all 1.0; no match: all 0.0)."""
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = ratio(iou_sum, tp, 0.0)
    return {"pq": dq * sq, "sq": sq, "dq": dq}


def f1_from_stats(tp: float, fp: float, fn: float, key: str = "") -> dict[str, float]:
    """Object F1, precision and recall from match counts (both empty: 1.0)."""
    empty = 1.0 if tp + fp + fn == 0 else 0.0
    return {
        f"f1{key}": ratio(2 * tp, 2 * tp + fp + fn, empty),
        f"precision{key}": ratio(tp, tp + fp, empty),
        f"recall{key}": ratio(tp, tp + fn, empty),
    }


def aji(gt: object, pred: object) -> float:
    """Aggregated Jaccard Index, the MoNuSeg definition (Kumar et al. 2017).

    Args:
        gt: ground-truth instance map (0 = background).
        pred: predicted instance map.

    Returns:
        ``C / U`` (see :func:`aji_sums`); 1.0 when both maps are empty.

    Shape:
        ``gt``, ``pred``: any equal shape, e.g. ``H x W``.
    """
    c, u = aji_sums(pair_overlaps(gt, pred))
    return ratio(c, u)


def aji_plus(gt: object, pred: object) -> float:
    """AJI+ (Graham et al. 2019): AJI with a one-to-one, maximal-total-IoU pairing.

    Unlike AJI, a prediction is never counted against several nuclei, so over-segmentation is
    not rewarded twice. 1.0 when both maps are empty.
    """
    c, u = aji_plus_sums(pair_overlaps(gt, pred))
    return ratio(c, u)


def panoptic_quality(gt: object, pred: object, iou_threshold: float = 0.5) -> dict[str, float]:
    """Panoptic quality of one class of things (Kirillov et al. 2019).

    ``PQ = SQ * DQ`` with ``SQ = sum(IoU of matches) / TP`` and ``DQ = TP / (TP + FP/2 + FN/2)``;
    a pair matches when IoU > ``iou_threshold`` (strictly; see :func:`match_stats`). MONAI's
    ``compute_panoptic_quality`` and torchmetrics' ``PanopticQuality`` are strict too, so a pair
    at IoU exactly 0.5 is unmatched in all three (checked in the tests).

    Returns:
        ``{"pq", "sq", "dq", "tp", "fp", "fn"}``; both maps empty gives PQ = SQ = DQ = 1.0.
    """
    tp, fp, fn, iou_sum = match_stats(pair_overlaps(gt, pred), iou_threshold)
    return {**pq_from_stats(tp, fp, fn, iou_sum), "tp": tp, "fp": fp, "fn": fn}


def object_f1(gt: object, pred: object, thresholds: Sequence[float] = (0.5,)) -> dict[str, float]:
    """Object-level F1, precision and recall at each IoU threshold (match: IoU > threshold).

    Returns:
        ``{"f1@t", "precision@t", "recall@t"}`` for each threshold ``t`` (formatted ``{t:g}``).
        F1 at a threshold equals DQ at that threshold.
    """
    ov = pair_overlaps(gt, pred)
    out: dict[str, float] = {}
    for t in thresholds:
        tp, fp, fn, _ = match_stats(ov, t)
        out.update(f1_from_stats(tp, fp, fn, f"@{t:g}"))
    return out


def foreground_dice(gt: object, pred: object) -> float:
    """Pixel Dice of the foregrounds ``gt > 0`` and ``pred > 0`` (both empty: 1.0)."""
    ov = pair_overlaps(gt, pred)
    return ratio(2 * ov.inter.sum(), ov.gt_area.sum() + ov.pred_area.sum())
