"""Matching ground-truth and predicted instances from their :class:`~seglab.metrics.overlap.Overlaps`.

Two matchings are used by the instance metrics:

* :func:`best_per_gt` (AJI, Kumar et al. 2017): every ground-truth instance takes the overlapping
  prediction of largest IoU; ties go to the smaller prediction id (``np.argmax`` order, as in
  the MoNuSeg and HoVer-Net code). A prediction may be taken by several instances.
* :func:`one_to_one` (AJI+, Graham et al. 2019; PQ below IoU 0.5): the one-to-one pairing that
  maximises the total IoU, ``scipy.optimize.linear_sum_assignment`` on the IoU matrix as
  HoVer-Net and MONAI do. Pairs with IoU 0 are never kept. The assignment is solved separately on
  each connected group of overlapping instances (the same optimum, without a dense ``G x P``
  matrix); star-shaped groups (one instance and the instances that overlap only it) keep their
  largest-IoU pair directly.
"""

from __future__ import annotations

import numpy as np

from seglab.metrics.overlap import Overlaps


def _best_per(key: np.ndarray, iou: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Among the pairs ``subset``, the largest-IoU pair of each ``key`` value (ties: first)."""
    if len(subset) == 0:
        return subset
    order = subset[np.lexsort((-iou[subset], key[subset]))]  # stable: ties keep pair order
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return order[first]


def best_per_gt(ov: Overlaps) -> np.ndarray:
    """Indices (into the pair arrays) of each ground truth's largest-IoU pair.

    Returns:
        ``(n,)`` pair indices, one per ground-truth instance that overlaps any prediction.
    """
    return _best_per(ov.pair_gt, ov.iou, np.arange(len(ov.iou)))


def one_to_one(ov: Overlaps) -> np.ndarray:
    """Indices (into the pair arrays) of the one-to-one pairing of maximal total IoU.

    Groups shaped as a star (one ground truth whose predictions overlap nothing else, or one
    prediction whose ground truths overlap nothing else; a lone pair is both) simply keep their
    largest-IoU pair; the other groups go to ``linear_sum_assignment``.

    Returns:
        ``(n,)`` pair indices; each ground truth and each prediction appears at most once.
    """
    if len(ov.iou) == 0:
        return np.zeros(0, np.int64)
    g_deg = np.bincount(ov.pair_gt, minlength=ov.num_gt)[ov.pair_gt]
    p_deg = np.bincount(ov.pair_pred, minlength=ov.num_pred)[ov.pair_pred]
    gt_star = np.bincount(ov.pair_gt, weights=p_deg > 1, minlength=ov.num_gt)[ov.pair_gt] == 0
    pred_star = np.bincount(ov.pair_pred, weights=g_deg > 1, minlength=ov.num_pred)[ov.pair_pred] == 0
    pred_star &= ~gt_star
    chosen = [
        _best_per(ov.pair_gt, ov.iou, np.flatnonzero(gt_star)),
        _best_per(ov.pair_pred, ov.iou, np.flatnonzero(pred_star)),
    ]
    rest = np.flatnonzero(~gt_star & ~pred_star)
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
