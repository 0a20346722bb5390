"""The pairing step shared by every instance metric: which instances overlap, and by how much.

One pass of ``np.bincount`` over the paired label codes ``gt * (P + 1) + pred`` gives the
intersection of every overlapping (ground truth, prediction) pair and, as row and column sums,
the area of every instance. Nothing loops over pixels or over all instance pairs: only pairs that
actually share a pixel are ever listed.

Ids may be any non-negative integers (0 is background); they need not be contiguous nor start at
1. When the largest ids are small, the raw ids index the bincount directly; when they are large,
ids are first relabelled to ``1..K`` with a look-up table, or, for huge ids, with ``np.unique``;
when even the relabelled ``(G + 1) * (P + 1)`` table would be too big, the intersections come from
``np.unique`` over the codes of the foreground-foreground pixels only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Largest dense table (in bins) used without a size argument: 4 M bins = 32 MB of int64.
_MIN_DENSE_BINS = 1 << 22


def as_label_array(label: object, name: str = "label") -> np.ndarray:
    """Return a label map (numpy array or torch tensor, any integer dtype) as a numpy array.

    Raises:
        ValueError: float or negative labels.
    """
    if type(label).__module__.startswith("torch"):
        label = label.detach().cpu().numpy()  # type: ignore[attr-defined]
    arr = np.asarray(label)
    if arr.dtype == bool:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise ValueError(f"{name} holds negative ids")
    if arr.dtype == np.uint64:  # bincount needs a type that casts safely to intp
        if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds ids above 2**63 - 1")
        arr = arr.astype(np.int64)
    return arr


@dataclass(frozen=True)
class Overlaps:
    """Areas of all instances and intersections of all overlapping pairs of two label maps.

    Attributes:
        gt_ids: ``(G,)`` sorted ids of the ground-truth instances (background 0 excluded).
        pred_ids: ``(P,)`` sorted ids of the predicted instances.
        gt_area: ``(G,)`` pixel count of each ground-truth instance.
        pred_area: ``(P,)`` pixel count of each predicted instance.
        pair_gt: ``(M,)`` index into ``gt_ids`` of each overlapping pair, sorted by (gt, pred).
        pair_pred: ``(M,)`` index into ``pred_ids`` of each overlapping pair.
        inter: ``(M,)`` intersection (pixels) of each pair; always > 0.
        union: ``(M,)`` union of each pair.
        iou: ``(M,)`` float64 intersection over union of each pair.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    inter: np.ndarray
    union: np.ndarray = field(init=False)
    iou: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        union = self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.inter
        object.__setattr__(self, "union", union)
        object.__setattr__(self, "iou", self.inter / np.maximum(union, 1))

    @property
    def num_gt(self) -> int:
        return len(self.gt_ids)

    @property
    def num_pred(self) -> int:
        return len(self.pred_ids)


def _relabel(flat: np.ndarray, top: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Map ids to ``0..K`` (0 stays 0); return the new map and the original ids of ``1..K``."""
    if top <= limit:
        present = np.bincount(flat, minlength=top + 1).astype(bool)
        present[0] = False
        lut = np.cumsum(present)  # id -> rank among present ids; 0 -> 0
        return lut[flat], np.flatnonzero(present)
    ids, inverse = np.unique(flat, return_inverse=True)
    if ids[0] != 0:
        return inverse + 1, ids
    return inverse, ids[1:]


def _dense_table(g: np.ndarray, p: np.ndarray, g_top: int, p_top: int):
    """Bincount over ``g * (p_top + 1) + p``: intersections and areas by raw (or relabelled) id."""
    width = p_top + 1
    code = g.astype(np.int64, copy=False) * width
    code += p
    table = np.bincount(code, minlength=(g_top + 1) * width).reshape(g_top + 1, width)
    g_area, p_area = table.sum(1), table.sum(0)
    flat = np.flatnonzero(table)  # contiguous scan: cheaper than nonzero() on a 2-D slice
    gi, pi = np.divmod(flat, width)
    keep = (gi > 0) & (pi > 0)
    return g_area, p_area, gi[keep], pi[keep], table.ravel()[flat[keep]]


def _sparse_table(g: np.ndarray, p: np.ndarray, g_top: int, p_top: int):
    """Areas by bincount; intersections by ``np.unique`` over the overlapping pixels only."""
    g_area = np.bincount(g, minlength=g_top + 1)
    p_area = np.bincount(p, minlength=p_top + 1)
    both = (g > 0) & (p > 0)
    code = g[both].astype(np.int64) * (p_top + 1) + p[both]
    codes, inter = np.unique(code, return_counts=True)
    return g_area, p_area, codes // (p_top + 1), codes % (p_top + 1), inter


def pair_overlaps(gt: object, pred: object, *, max_dense_bins: int | None = None) -> Overlaps:
    """Pair two instance label maps: areas, and intersection/union/IoU of overlapping pairs.

    Args:
        gt: ground-truth instance map, numpy array or torch tensor of any integer dtype and shape.
        pred: predicted instance map of the same shape.
        max_dense_bins: largest ``(G + 1) * (P + 1)`` table counted densely; default
            ``max(4 * pixels, 4 M)``.

    Returns:
        The :class:`Overlaps` of the two maps.

    Shape:
        ``gt`` and ``pred``: any shape, equal (``H x W`` images, ``D x H x W`` volumes).

    Raises:
        ValueError: shapes differ, or labels are float or negative.
    """
    gt_arr, pred_arr = as_label_array(gt, "gt"), as_label_array(pred, "pred")
    if gt_arr.shape != pred_arr.shape:
        raise ValueError(f"gt shape {gt_arr.shape} differs from pred shape {pred_arr.shape}")
    g, p = gt_arr.ravel(), pred_arr.ravel()
    limit = max(4 * g.size, _MIN_DENSE_BINS) if max_dense_bins is None else max_dense_bins
    g_top = int(g.max()) if g.size else 0
    p_top = int(p.max()) if p.size else 0
    g_ids = p_ids = None
    if (g_top + 1) * (p_top + 1) > limit:  # large ids: relabel to 1..K first
        g, g_ids = _relabel(g, g_top, limit)
        p, p_ids = _relabel(p, p_top, limit)
        g_top, p_top = len(g_ids), len(p_ids)
    fill = _dense_table if (g_top + 1) * (p_top + 1) <= limit else _sparse_table
    g_area, p_area, pair_g, pair_p, inter = fill(g, p, g_top, p_top)
    # keep only ids present; turn raw ids into indices 0..G-1 / 0..P-1
    g_keep, p_keep = np.flatnonzero(g_area[1:]) + 1, np.flatnonzero(p_area[1:]) + 1
    g_index = np.concatenate([[-1], np.cumsum(g_area[1:] > 0) - 1])
    p_index = np.concatenate([[-1], np.cumsum(p_area[1:] > 0) - 1])
    return Overlaps(
        gt_ids=g_keep if g_ids is None else g_ids[g_keep - 1],
        pred_ids=p_keep if p_ids is None else p_ids[p_keep - 1],
        gt_area=g_area[g_keep].astype(np.int64),
        pred_area=p_area[p_keep].astype(np.int64),
        pair_gt=g_index[pair_g],
        pair_pred=p_index[pair_p],
        inter=inter.astype(np.int64),
    )
