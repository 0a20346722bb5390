"""Matching ground-truth and predicted instances from their :class:`~seglab.metrics.overlap.Overlaps`.

Two matchings are used by the instance metrics:

* :func:`best_per_gt` (AJI, Kumar et al. 2017): every ground-truth instance takes the overlapping
  prediction of largest IoU; ties go to the smaller prediction id (``np.argmax`` order, as in
  the MoNuSeg and HoVer-Net code). A prediction may be taken by several instances.
* :func:`one_to_one` (AJI+, Graham et al. 2019; PQ below IoU 0.5): the one-to-one pairing that
  maximises the total IoU, ``scipy.optimize.linear_sum_assignment`` on the IoU matrix as
  HoVer-Net and MONAI do. Pairs with IoU 0 are never kept. The assignment is solved separately on
  each connected group of overlapping instances (the same optimum, without a dense ``G x P``
  matrix); an instance that overlaps exactly one other, which overlaps only it, is paired
  directly.
"""

from __future__ import annotations

import numpy as np

from seglab.metrics.overlap import Overlaps


def best_per_gt(ov: Overlaps) -> np.ndarray:
    """Indices (into the pair arrays) of each ground truth's largest-IoU pair.

    Returns:
        ``(n,)`` pair indices, one per ground-truth instance that overlaps any prediction.
    """
    if len(ov.iou) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((-ov.iou, ov.pair_gt))  # stable: ties keep the (gt, pred) order
    gt_sorted = ov.pair_gt[order]
    first = np.ones(len(order), bool)
    first[1:] = gt_sorted[1:] != gt_sorted[:-1]
    return order[first]


def one_to_one(ov: Overlaps) -> np.ndarray:
    """Indices (into the pair arrays) of the one-to-one pairing of maximal total IoU.

    Returns:
        ``(n,)`` pair indices; each ground truth and each prediction appears at most once.
    """
    m = len(ov.iou)
    if m == 0:
        return np.zeros(0, np.int64)
    g_deg = np.bincount(ov.pair_gt, minlength=ov.num_gt)[ov.pair_gt]
    p_deg = np.bincount(ov.pair_pred, minlength=ov.num_pred)[ov.pair_pred]
    simple = (g_deg == 1) & (p_deg == 1)
    chosen = [np.flatnonzero(simple)]
    rest = np.flatnonzero(~simple)
    if len(rest):
        chosen.append(_assign_groups(ov, rest))
    return np.sort(np.concatenate(chosen))


def _assign_groups(ov: Overlaps, pairs: np.ndarray) -> np.ndarray:
    """Solve the maximal-IoU assignment on each connected group of the given pairs."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_g = ov.num_gt
    rows, cols = ov.pair_gt[pairs], ov.pair_pred[pairs] + n_g
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n_g + ov.num_pred,) * 2)
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    out = []
    for group in np.split(pairs[order], bounds):  # one loop step per group of touching instances
        g_u, g_inv = np.unique(ov.pair_gt[group], return_inverse=True)
        p_u, p_inv = np.unique(ov.pair_pred[group], return_inverse=True)
        dense = np.zeros((len(g_u), len(p_u)))
        dense[g_inv, p_inv] = ov.iou[group]
        index = np.full(dense.shape, -1)
        index[g_inv, p_inv] = group
        r, c = linear_sum_assignment(dense, maximize=True)
        picked = index[r, c]
        out.append(picked[picked >= 0])
    return np.concatenate(out) if out else np.zeros(0, np.int64)
