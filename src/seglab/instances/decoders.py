"""Decoders from per-pixel probabilities to instance label maps (the semantic-to-instance route).

A network cannot label "nucleus 17" directly, but it can predict per-pixel quantities that make
touching objects separable: a three-class map (background / interior / boundary, as in
Cui et al., "Deep learning for nuclei segmentation", and the DCAN contour idea of Chen et al.,
CVPR 2016) or a normalised distance-to-boundary map (Naylor et al., IEEE TMI 2019). Marker-
controlled watershed (Beucher & Meyer, 1993) then splits the foreground into instances, seeded by
confident interiors or by the distance map's regional maxima.

Every step is a whole-array scipy / scikit-image call: no Python loop over pixels or instances.
Label maps are ``H x W`` int32, 0 = background, instances numbered 1..K.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed


def _as_prob(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be H x W, got shape {x.shape}")
    return x


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill background holes enclosed by instances with an adjacent instance's id.

    A hole is a 4-connected background component that does not touch the image border (as
    ``scipy.ndimage.binary_fill_holes`` defines it); it takes the largest id among the instance
    pixels next to it (the enclosing instance when there is one).

    Args:
        labels: ``H x W`` instance map.

    Returns:
        A map in which no background pixel is enclosed by foreground (``labels`` itself when
        there is nothing to fill).
    """
    background, n = ndi.label(labels == 0)
    if n == 0:
        return labels
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[0] = False
    is_hole[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = False
    if not is_hole.any():
        return labels
    holes = is_hole[background]
    rows, cols = np.nonzero(holes)
    r0, r1 = max(rows.min() - 1, 0), rows.max() + 2
    c0, c1 = max(cols.min() - 1, 0), cols.max() + 2
    near = ndi.grey_dilation(labels[r0:r1, c0:c1], size=(3, 3))  # largest id next to each pixel
    hole_ids = np.flatnonzero(is_hole)
    fill = np.zeros(n + 1, dtype=labels.dtype)
    fill[hole_ids] = ndi.maximum(near, background[r0:r1, c0:c1], index=hole_ids)
    out = labels.copy()
    out[holes] = fill[background[holes]]
    return out


def remove_small_instances(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set instances with fewer than ``min_size`` pixels to background (vectorised by bincount)."""
    if min_size <= 1 or labels.max(initial=0) == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def _finish(labels: np.ndarray, min_size: int, fill_holes: bool) -> np.ndarray:
    if fill_holes:
        labels = fill_label_holes(labels)
    labels = remove_small_instances(labels, min_size)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)


def _add_unseeded(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give foreground components that received no marker their own ids."""
    rest, n = ndi.label(mask & (labels == 0))
    if n:
        top = labels.max(initial=0)
        labels = np.where(rest > 0, rest + top, labels)
    return labels


def three_class_watershed(
    probs: np.ndarray,
    *,
    interior_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_size: int = 10,
    fill_holes: bool = True,
) -> np.ndarray:
    """Marker-controlled watershed on a background / interior / boundary probability map.

    Markers are the connected components of confident interior (interior probability above
    ``interior_threshold`` and boundary probability below ``boundary_threshold``); the mask is
    the foreground (``1 - p_background > foreground_threshold``); the flooded relief is
    ``p_boundary - p_interior``, so instances meet on the boundary ridges. Foreground components
    without a marker become instances of their own; small instances are removed, holes filled.

    Args:
        probs: class probabilities, channel order background, interior, boundary.
        interior_threshold: minimum interior probability of a marker pixel.
        boundary_threshold: a marker pixel's boundary probability must be below this.
        foreground_threshold: minimum foreground probability of a pixel inside an instance.
        min_size: instances with fewer pixels are dropped.
        fill_holes: fill background holes enclosed by an instance.

    Returns:
        ``H x W`` int32 instance map, ids 1..K.

    Shape:
        probs: ``3 x H x W`` -> ``H x W``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(f"three_class_watershed expects 3 x H x W probabilities, got {probs.shape}")
    background, interior, boundary = probs
    mask = (1.0 - background) > foreground_threshold
    markers, _ = ndi.label((interior > interior_threshold) & (boundary < boundary_threshold) & mask)
    labels = watershed(boundary - interior, markers, mask=mask)
    return _finish(_add_unseeded(labels, mask), min_size, fill_holes)


def distance_watershed(
    distance: np.ndarray,
    foreground: np.ndarray,
    *,
    foreground_threshold: float = 0.5,
    h: float = 0.1,
    min_size: int = 10,
    fill_holes: bool = True,
) -> np.ndarray:
    """Watershed of the negated distance map, seeded by its h-maxima (Naylor et al., 2019).

    Args:
        distance: predicted distance to the instance boundary, normalised per instance to
            [0, 1] (1 at the instance's centre).
        foreground: foreground probability.
        foreground_threshold: minimum foreground probability of a pixel inside an instance.
        h: a regional maximum seeds an instance only if it rises at least ``h`` above the
            saddle connecting it to a higher maximum (suppresses noise peaks).
        min_size: instances with fewer pixels are dropped.
        fill_holes: fill background holes enclosed by an instance.

    Returns:
        ``H x W`` int32 instance map, ids 1..K.

    Shape:
        distance, foreground: ``H x W`` -> ``H x W``.
    """
    distance = _as_prob(distance, "distance")
    mask = _as_prob(foreground, "foreground") > foreground_threshold
    relief = np.where(mask, distance, 0.0).astype(np.float64)
    peaks = h_maxima(relief, h) > 0 if mask.any() else np.zeros_like(mask)
    markers, _ = ndi.label(peaks & mask)
    labels = watershed(-relief, markers, mask=mask)
    return _finish(_add_unseeded(labels, mask), min_size, fill_holes)


def connected_components(
    foreground_prob: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 10,
    *,
    fill_holes: bool = True,
) -> np.ndarray:
    """Instances as the 4-connected components of the thresholded foreground.

    The simplest decoder: touching objects merge. A baseline for the watershed decoders.

    Args:
        foreground_prob: foreground probability.
        threshold: a pixel is foreground when its probability exceeds this.
        min_size: instances with fewer pixels are dropped.
        fill_holes: fill background holes enclosed by an instance.

    Returns:
        ``H x W`` int32 instance map, ids 1..K.
    """
    labels, _ = ndi.label(_as_prob(foreground_prob, "foreground_prob") > threshold)
    return _finish(labels, min_size, fill_holes)
