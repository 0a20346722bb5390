"""Data-set aggregation of instance metrics, both as the mean over images and pooled.

Two conventions are in use in the literature and both are reported:

* **mean** (MoNuSeg, HoVer-Net): each metric is computed per image, then averaged over images.
  Every image weighs the same, however many nuclei it holds.
* **pooled** (panopticapi, CoNIC): the raw counts are summed over all images (AJI ``C`` and
  ``U``, PQ ``TP``, ``FP``, ``FN`` and IoU sum, Dice intersections and areas) and each metric is
  computed once from the sums. Every nucleus (or pixel) weighs the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seglab.metrics.instance import (
    aji_plus_sums,
    aji_sums,
    f1_from_stats,
    match_stats,
    pq_from_stats,
    ratio,
)
from seglab.metrics.overlap import as_label_array, pair_overlaps

SCORE_KEYS = ("aji", "aji_plus", "pq", "sq", "dq", "f1", "dice")


def image_sums(gt: object, pred: object, iou_threshold: float, f1_thresholds: Sequence[float]) -> dict:
    """The raw counts of one image from which every instance metric follows."""
    ov = pair_overlaps(gt, pred)
    sums: dict = {}
    sums["aji_c"], sums["aji_u"] = aji_sums(ov)
    sums["ajip_c"], sums["ajip_u"] = aji_plus_sums(ov)
    sums["tp"], sums["fp"], sums["fn"], sums["iou_sum"] = match_stats(ov, iou_threshold)
    for t in f1_thresholds:
        sums[f"tp@{t:g}"], sums[f"fp@{t:g}"], sums[f"fn@{t:g}"], _ = match_stats(ov, t)
    sums["dice_inter"] = int(ov.inter.sum())
    sums["dice_total"] = int(ov.gt_area.sum() + ov.pred_area.sum())
    return sums


def scores_from_sums(sums: dict, f1_thresholds: Sequence[float]) -> dict[str, float]:
    """Every metric from (per-image or summed) counts."""
    tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
    out = {
        "aji": ratio(sums["aji_c"], sums["aji_u"]),
        "aji_plus": ratio(sums["ajip_c"], sums["ajip_u"]),
        **pq_from_stats(tp, fp, fn, sums["iou_sum"]),
        "f1": f1_from_stats(tp, fp, fn)["f1"],
        "dice": ratio(2 * sums["dice_inter"], sums["dice_total"]),
    }
    for t in f1_thresholds:
        k = f"@{t:g}"
        out.update(f1_from_stats(sums["tp" + k], sums["fp" + k], sums["fn" + k], k))
    return out


class InstanceMetrics:
    """Accumulate instance metrics over a data set; report the mean over images and pooled.

    Per image: ``aji``, ``aji_plus``, ``pq``, ``sq``, ``dq``, ``f1`` (at ``iou_threshold``, equal
    to ``dq``), ``dice`` (foreground pixel Dice), ``f1@t``/``precision@t``/``recall@t`` for each
    ``t`` in ``f1_thresholds``, and the counts ``tp``, ``fp``, ``fn``.

    Args:
        iou_threshold: PQ match threshold (IoU strictly greater).
        f1_thresholds: IoU thresholds of the object F1 scores.

    Example:
        >>> m = InstanceMetrics()
        >>> m.update(gt, pred)          # H x W, or N x H x W for a batch of images
        >>> m.compute()["mean"]["aji"]
    """

    def __init__(self, *, iou_threshold: float = 0.5, f1_thresholds: Sequence[float] = (0.5,)) -> None:
        self.iou_threshold = float(iou_threshold)
        self.f1_thresholds = tuple(float(t) for t in f1_thresholds)
        self.per_image: list[dict[str, float]] = []
        self._sums: list[dict] = []

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.per_image, self._sums = [], []

    def update(self, gt: object, pred: object) -> None:
        """Add one image (``H x W``) or a batch of images (``N x H x W``).

        Args:
            gt: ground-truth instance map(s), numpy or torch, any integer dtype.
            pred: predicted instance map(s) of the same shape. Instances are matched within
                each image only. For 3-D volumes call the functions in
                :mod:`seglab.metrics.instance` directly.
        """
        g, p = as_label_array(gt, "gt"), as_label_array(pred, "pred")
        if g.shape != p.shape:
            raise ValueError(f"gt shape {g.shape} differs from pred shape {p.shape}")
        if g.ndim not in (2, 3):
            raise ValueError(f"expected H x W or N x H x W label maps, got shape {g.shape}")
        for gi, pi in zip(*(np.reshape(a, (-1, *a.shape[-2:])) for a in (g, p)), strict=True):
            sums = image_sums(gi, pi, self.iou_threshold, self.f1_thresholds)
            self._sums.append(sums)
            scores = scores_from_sums(sums, self.f1_thresholds)
            self.per_image.append({**scores, "tp": sums["tp"], "fp": sums["fp"], "fn": sums["fn"]})

    def compute(self) -> dict[str, dict[str, float]]:
        """Return ``{"mean": {...}, "pooled": {...}}`` (NaN scores when no image was seen).

        ``mean`` averages the per-image scores; ``pooled`` computes each score once from the
        counts summed over all images. ``pooled`` also holds the total ``tp``, ``fp``, ``fn``.
        """
        if not self._sums:
            keys = [*SCORE_KEYS] + [f"{m}@{t:g}" for t in self.f1_thresholds for m in ("f1", "precision", "recall")]
            return {"mean": dict.fromkeys(keys, float("nan")), "pooled": dict.fromkeys(keys, float("nan"))}
        keys = [k for k in self.per_image[0] if k not in ("tp", "fp", "fn")]
        mean = {k: float(np.mean([s[k] for s in self.per_image])) for k in keys}
        total = {k: sum(s[k] for s in self._sums) for k in self._sums[0]}
        pooled = {**scores_from_sums(total, self.f1_thresholds), "tp": total["tp"], "fp": total["fp"], "fn": total["fn"]}
        return {"mean": mean, "pooled": pooled}
