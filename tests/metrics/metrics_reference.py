"""Slow, obvious transcriptions of the metric definitions, used as references by the tests.

Each function loops over instances with boolean masks, exactly as the papers describe the metric.
They are far too slow for real data and exist only to check the vectorised code.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def ids_of(label: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(label) if i != 0]


def iou_matrix(gt: np.ndarray, pred: np.ndarray):
    """Dense IoU, intersection and union for every (gt, pred) pair, by boolean masks."""
    g_ids, p_ids = ids_of(gt), ids_of(pred)
    inter = np.zeros((len(g_ids), len(p_ids)))
    union = np.zeros((len(g_ids), len(p_ids)))
    for a, g in enumerate(g_ids):
        gm = gt == g
        for b, p in enumerate(p_ids):
            pm = pred == p
            inter[a, b] = np.logical_and(gm, pm).sum()
            union[a, b] = np.logical_or(gm, pm).sum()
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return g_ids, p_ids, inter, union, iou


def ref_aji(gt: np.ndarray, pred: np.ndarray) -> float:
    """Kumar et al. 2017: each GT takes its best-IoU prediction (first on ties); reuse allowed."""
    if not np.any(gt) and not np.any(pred):
        return 1.0
    c, u = ref_aji_sums(gt, pred)
    return c / u if u else 0.0


def ref_aji_sums(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """C and U of the AJI definition: C / U is the AJI (per image, or pooled over images)."""
    g_ids, p_ids, inter, union, iou = iou_matrix(gt, pred)
    c = u = 0.0
    used = set()
    for a, g in enumerate(g_ids):
        if len(p_ids) == 0 or iou[a].max() == 0:
            u += (gt == g).sum()
            continue
        b = int(np.argmax(iou[a]))
        c += inter[a, b]
        u += union[a, b]
        used.add(b)
    for b, p in enumerate(p_ids):
        if b not in used:
            u += (pred == p).sum()
    return c, u


def ref_one_to_one(iou: np.ndarray) -> list[tuple[int, int]]:
    """HoVer-Net pairing: linear_sum_assignment maximising total IoU over the dense matrix."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] > 0]


def ref_aji_plus(gt: np.ndarray, pred: np.ndarray) -> float:
    g_ids, p_ids, inter, union, iou = iou_matrix(gt, pred)
    if not g_ids and not p_ids:
        return 1.0
    pairs = ref_one_to_one(iou)
    c = sum(inter[a, b] for a, b in pairs)
    u = sum(union[a, b] for a, b in pairs)
    paired_g = {a for a, _ in pairs}
    paired_p = {b for _, b in pairs}
    u += sum((gt == g).sum() for a, g in enumerate(g_ids) if a not in paired_g)
    u += sum((pred == p).sum() for b, p in enumerate(p_ids) if b not in paired_p)
    return c / u if u else 0.0


def ref_pq_stats(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5):
    """Kirillov et al. 2018 (things): a match needs IoU > thr; below 0.5, Hungarian first."""
    g_ids, p_ids, _, _, iou = iou_matrix(gt, pred)
    if thr >= 0.5:
        pairs = [(a, b) for a in range(len(g_ids)) for b in range(len(p_ids)) if iou[a, b] > thr]
    else:
        pairs = [(a, b) for a, b in ref_one_to_one(iou) if iou[a, b] > thr]
    tp = len(pairs)
    iou_sum = float(sum(iou[a, b] for a, b in pairs))
    return tp, len(p_ids) - tp, len(g_ids) - tp, iou_sum


def ref_pq(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> dict:
    tp, fp, fn, iou_sum = ref_pq_stats(gt, pred, thr)
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou_sum / tp if tp else 0.0
    return {"pq": dq * sq, "sq": sq, "dq": dq, "tp": tp, "fp": fp, "fn": fn}


def ref_fg_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    a, b = gt > 0, pred > 0
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else 2.0 * np.logical_and(a, b).sum() / denom


def random_instance_pair(rng: np.random.Generator, size: int = 48, n: int = 12):
    """A GT map of random blobs with non-contiguous ids, and a perturbed prediction."""
    yy, xx = np.mgrid[:size, :size]
    gt = np.zeros((size, size), np.int64)
    for k in range(n):
        cy, cx = rng.integers(0, size, 2)
        ry, rx = rng.integers(2, 8, 2)
        gt[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1000 + 7 * k
    pred = np.zeros_like(gt)
    for k, g in enumerate(ids_of(gt)):
        mask = gt == g
        kind = rng.integers(0, 6)
        if kind == 0:  # drop
            continue
        if kind == 1:  # shift
            mask = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        if kind == 2:  # split into two halves
            cols = np.nonzero(mask.any(0))[0]
            half = mask & (xx < cols.mean())
            pred[mask & ~half] = 5 + 3 * k
            mask = half
        if kind == 3:  # grow
            mask = mask | np.roll(mask, 1, 0) | np.roll(mask, 1, 1)
        pred[mask] = 50 + 3 * k
    if rng.random() < 0.5:  # merge two predictions
        p = ids_of(pred)
        if len(p) >= 2:
            pred[pred == p[1]] = p[0]
    # a false positive blob
    cy, cx = rng.integers(0, size, 2)
    pred[(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = 999
    return gt, pred
