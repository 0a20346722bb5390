"""Training targets derived from an instance label map.

An instance map is an integer ``H x W`` array (numpy or torch; leading batch axes are accepted
where noted), 0 = background, other values = instance ids (not necessarily contiguous).

- :func:`foreground`: 0 / 1 (semantic nucleus mask).
- :func:`three_class_targets`: 0 background / 1 interior / 2 boundary, the target of
  contour-aware U-Nets (Cui et al. 2019; Chen et al., "DCAN", CVPR 2016).
- :func:`distance_targets`: per-instance Euclidean distance to the instance border, normalised to
  [0, 1] within each instance (Naylor et al., "Segmentation of nuclei in histopathology images by
  deep regression of the distance map", IEEE TMI 2019).
- :func:`relabel_sequential`: ids mapped to 1..K in increasing order (for embedding losses).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

IGNORE_INDEX = 255


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _copy(x: Any) -> Any:
    return x.clone() if _is_torch(x) else x.copy()


def _int64(x: Any) -> Any:
    if _is_torch(x):
        import torch

        return x.to(torch.int64)
    return np.asarray(x).astype(np.int64)


def foreground(inst: Any, *, ignore_index: int | None = None) -> Any:
    """Binary foreground mask of an instance (or semantic) map.

    Args:
        inst: ``(..., H, W)`` integer map, numpy or torch.
        ignore_index: for semantic maps: pixels equal to it keep that value instead of becoming 1.

    Returns:
        int64 map of the input's type: 0 background, 1 foreground (``ignore_index`` kept).
    """
    out = _int64(inst > 0)
    if ignore_index is not None:
        out[inst == ignore_index] = ignore_index
    return out


def _interior(inst: Any, width: int) -> Any:
    """Foreground pixels farther than ``width`` 4-neighbour steps from any other id.

    Each step erodes every instance separately (a pixel stays interior only if its four
    neighbours are interior pixels of the same id); outside the image counts as the same id, so
    instances cut by the image border get no boundary there.
    """
    interior = inst > 0
    for _ in range(width):
        keep = _copy(interior)
        for axis in (-2, -1):
            n = inst.shape[axis]
            lo = [slice(None)] * inst.ndim
            hi = [slice(None)] * inst.ndim
            lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
            lo, hi = tuple(lo), tuple(hi)
            same = (inst[lo] == inst[hi]) & interior[lo] & interior[hi]
            keep[lo] &= same
            keep[hi] &= same
        interior = keep
    return interior


def three_class_targets(inst: Any, boundary_width: int = 1) -> Any:
    """Background / interior / boundary classes of an instance map.

    A pixel of an instance is boundary when it lies within ``boundary_width`` 4-neighbour steps
    of a pixel with another id (background or another instance). For ``boundary_width=1`` this is
    ``skimage.segmentation.find_boundaries(inst, mode="inner")`` restricted to instances.

    Args:
        inst: ``(..., H, W)`` integer instance map, numpy or torch.
        boundary_width: boundary thickness in pixels (>= 1).

    Returns:
        int64 map of the input's type: 0 background, 1 interior, 2 boundary.
    """
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1, got {boundary_width}")
    fg = inst > 0
    interior = _interior(inst, boundary_width)
    return _int64(fg) + _int64(fg & ~interior)


def _contact_graph(dense: np.ndarray) -> list[set[int]]:
    """Adjacency sets of instances that touch (8-connectivity) in a dense 0..K map."""
    k = int(dense.max(initial=0))
    h, w = dense.shape
    padded = np.pad(dense, 1)
    pairs = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        other = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        touch = (dense != other) & (dense > 0) & (other > 0)
        pairs.append(np.stack([dense[touch], other[touch]], axis=1))
    both = np.concatenate(pairs)
    codes = np.unique(both[:, 0] * (k + 1) + both[:, 1])
    graph: list[set[int]] = [set() for _ in range(k + 1)]
    for i, j in zip((codes // (k + 1)).tolist(), (codes % (k + 1)).tolist(), strict=True):
        graph[i].add(j)
        graph[j].add(i)
    return graph


def _greedy_colours(graph: list[set[int]]) -> np.ndarray:
    """Colour instances so that touching instances differ (colour 0 = background)."""
    colour = np.zeros(len(graph), dtype=np.int64)
    for node in range(1, len(graph)):
        used = {int(colour[n]) for n in graph[node]}
        c = 1
        while c in used:
            c += 1
        colour[node] = c
    return colour


def _max_per_label(values: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` over each id of a dense 0..K map (a radix sort and ``reduceat``)."""
    k = int(dense.max(initial=0))
    flat = dense.ravel().astype(np.uint16 if k < 65535 else np.int64)
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    peak = np.zeros(k + 1)
    peak[ids[starts]] = np.maximum.reduceat(values.ravel()[order], starts)
    return peak


def distance_targets(inst: Any) -> Any:
    """Distance of each instance pixel to the nearest pixel outside its instance, in [0, 1].

    Exactly the per-instance ``scipy.ndimage.distance_transform_edt(inst == i)`` divided by its
    maximum, computed with one Euclidean distance transform per colour of a greedy colouring of
    the contact graph (touching instances get different colours, so each transform sees every
    instance surrounded by zeros; usually 3-5 transforms in all), and one sort for the
    per-instance maxima. Background is 0. As in scipy, the image border is not a zero: a
    nucleus cut by the border is measured as if it went on.

    Args:
        inst: ``H x W`` integer instance map, numpy or torch.

    Returns:
        float32 ``H x W`` map of the input's type.
    """
    torch_in = _is_torch(inst)
    arr = inst.detach().cpu().numpy() if torch_in else np.asarray(inst)
    dense = np.asarray(relabel_sequential(arr))
    out = np.zeros(dense.shape, dtype=np.float64)
    if dense.max(initial=0) > 0:
        colour = _greedy_colours(_contact_graph(dense))[dense]
        for c in range(1, int(colour.max()) + 1):
            sel = colour == c
            out[sel] = ndimage.distance_transform_edt(sel)[sel]
        peak = _max_per_label(out, dense)
        peak[0] = 1.0
        out /= peak[dense]
    out = out.astype(np.float32)
    if torch_in:
        import torch

        return torch.from_numpy(out).to(inst.device)
    return out


def relabel_sequential(inst: Any) -> Any:
    """Map the ids of an instance map to 1..K in increasing order (0 stays background).

    Args:
        inst: integer map of any shape, numpy or torch.

    Returns:
        int64 map of the input's type with ids 1..K.
    """
    if _is_torch(inst):
        import torch

        uniq, inv = torch.unique(inst, return_inverse=True)
        shift = 0 if (uniq.numel() and uniq[0] == 0) else 1
        return (inv + shift).to(torch.int64)
    arr = np.asarray(inst)
    top = int(arr.max(initial=0))
    if arr.size and arr.min() >= 0 and top <= 4 * arr.size + 1024:  # small ids: a lookup table
        present = np.zeros(top + 1, bool)
        present[arr] = True
        present[0] = False
        lut = np.cumsum(present).astype(np.int64)
        lut[~present] = 0
        return lut[arr]
    uniq, inv = np.unique(arr, return_inverse=True)
    shift = 0 if (uniq.size and uniq[0] == 0) else 1
    return (inv.reshape(arr.shape) + shift).astype(np.int64)
