"""Detections (boxes, scores, masks) -> instance maps, for single images and across tiles.

Mask R-CNN predicts overlapping masks; an instance map gives each pixel one owner. Masks are
painted in increasing score order so the highest-scoring detection wins every contested pixel
(as the Mask R-CNN panoptic baselines do). Implemented without painting loops: each pixel takes
the largest score rank among the masks covering it (a running maximum over chunks of masks).

Tiled merging (:func:`merge_tiled_detections`, :class:`TiledDetectionMerger`; the model runs over
the tiles in :mod:`seglab.inference.detection`): along each axis every tile *owns* the band
from the middle of its overlap with the previous tile to the middle of its overlap with the
next; a detection is kept only by the tile that owns its box centre, so an object seen by two
tiles is kept once, from the tile where it lies farther from the border. Overlap between tiles
should exceed the largest object so the owning tile sees it whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

from seglab.instances.decoders import remove_small_instances

_CHUNK = 32  # masks per step of the running maximum (bounds memory on large images)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _masks(detections: dict[str, Any]) -> np.ndarray:
    masks = _numpy(detections["masks"])
    return masks[:, 0] if masks.ndim == 4 else masks


def paint_by_rank(masks: np.ndarray, ranks: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = max(out, max_k ranks[k] * masks[k])`` pixel-wise; masks K x H x W bool."""
    for start in range(0, len(masks), _CHUNK):
        chunk = masks[start:start + _CHUNK] * ranks[start:start + _CHUNK, None, None].astype(out.dtype)
        np.maximum(out, chunk.max(0), out=out)
    return out


def _finish(rank_map: np.ndarray, min_size: int) -> np.ndarray:
    labels = remove_small_instances(rank_map, min_size)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)


def detections_to_instances(
    detections: dict[str, Any],
    *,
    image_shape: tuple[int, int] | None = None,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    min_size: int = 0,
) -> np.ndarray:
    """One image's detections -> ``H x W`` int32 instance map, overlaps resolved by score.

    Args:
        detections: ``{"scores": K, "masks": K x 1 x H x W or K x H x W}`` (torchvision's output;
            mask probabilities, or binary masks), tensors or arrays.
        image_shape: ``(H, W)``, needed only when there are no masks to take it from.
        score_threshold: detections scoring below this are dropped.
        mask_threshold: mask probability above which a pixel belongs to the detection.
        min_size: instances with fewer visible pixels are dropped.

    Returns:
        ``H x W`` int32 map, 0 = background, 1..K numbered in increasing score order.
    """
    masks = _masks(detections)
    scores = _numpy(detections["scores"]).astype(np.float64)
    shape = masks.shape[1:] if masks.ndim == 3 and masks.shape[1] > 0 else image_shape
    if shape is None:
        raise ValueError("detections without masks need image_shape")
    keep = scores >= score_threshold
    masks, scores = masks[keep] > mask_threshold, scores[keep]
    ranks = np.empty(len(scores), dtype=np.int32)
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1, dtype=np.int32)
    return _finish(paint_by_rank(masks, ranks, np.zeros(tuple(shape), np.int32)), min_size)


def _owned_bands(starts: Sequence[int], tile: int, length: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` owned by each tile along one axis: from mid-overlap to mid-overlap."""
    cuts = [0] + [(starts[i] + starts[i - 1] + tile) // 2 for i in range(1, len(starts))] + [length]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


class TiledDetectionMerger:
    """Merge per-tile detections into one instance map, tile by tile (memory: the map, not the masks).

    Each tile's owned detections (box centre in the tile's band, module docstring) are painted
    at once: a pixel goes to the covering detection of highest score, over this and all
    earlier tiles (a running per-pixel best score), which is the same map as painting every
    detection of the image in increasing score order (of equal scores, the first painted wins).
    A tile's masks are dropped once painted.

    Args:
        image_shape: ``(H, W)`` of the image.
        rows, cols: the tile grid's row and column starts (as :func:`seglab.inference.tile_starts`).
        tile_size: ``(tile_h, tile_w)``.
        score_threshold, mask_threshold: as :func:`detections_to_instances`.
    """

    def __init__(
        self, image_shape: tuple[int, int], rows: Sequence[int], cols: Sequence[int], tile_size: tuple[int, int],
        *, score_threshold: float = 0.5, mask_threshold: float = 0.5,
    ) -> None:
        height, width = image_shape
        self.row_band = dict(zip(rows, _owned_bands(list(rows), tile_size[0], height), strict=True))
        self.col_band = dict(zip(cols, _owned_bands(list(cols), tile_size[1], width), strict=True))
        self.score_threshold, self.mask_threshold = score_threshold, mask_threshold
        self.ids = np.zeros((height, width), np.int32)
        self.best = np.full((height, width), -np.inf, np.float32)
        self.count = 0

    def add(self, det: dict[str, Any], origin: tuple[int, int]) -> None:
        """Paint the detections of the tile at ``origin = (top, left)`` that the tile owns."""
        top, left = origin
        boxes, scores = _numpy(det["boxes"]).reshape(-1, 4), _numpy(det["scores"]).astype(np.float32)
        cy = top + 0.5 * (boxes[:, 1] + boxes[:, 3])
        cx = left + 0.5 * (boxes[:, 0] + boxes[:, 2])
        (r0, r1), (c0, c1) = self.row_band[top], self.col_band[left]
        own = (scores >= self.score_threshold) & (cy >= r0) & (cy < r1) & (cx >= c0) & (cx < c1)
        if not own.any():
            return
        masks, scores = _masks(det)[own] > self.mask_threshold, scores[own]
        h, w = masks.shape[1:]
        tile_best = np.full((h, w), -np.inf, np.float32)
        tile_arg = np.zeros((h, w), np.int32)
        for start in range(0, len(masks), _CHUNK):
            chunk = np.where(masks[start:start + _CHUNK], scores[start:start + _CHUNK, None, None], -np.inf)
            top_score, top_index = chunk.max(0), chunk.argmax(0)
            better = top_score > tile_best
            tile_arg[better] = top_index[better] + start
            tile_best[better] = top_score[better]
        best, ids = self.best[top:top + h, left:left + w], self.ids[top:top + h, left:left + w]
        win = tile_best > best
        ids[win] = self.count + 1 + tile_arg[win]
        best[win] = tile_best[win]
        self.count += len(scores)

    def finish(self, min_size: int = 0) -> np.ndarray:
        """The merged ``H x W`` int32 map, small instances dropped, numbered 1..K."""
        return _finish(self.ids, min_size)


def merge_tiled_detections(
    tiles: Sequence[dict[str, Any]],
    origins: Sequence[tuple[int, int]],
    image_shape: tuple[int, int],
    *,
    tile_size: tuple[int, int],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    min_size: int = 0,
) -> np.ndarray:
    """Merge per-tile detections into one ``H x W`` instance map of the whole image.

    Args:
        tiles: torchvision detections of each tile (tile coordinates).
        origins: ``(top, left)`` of each tile in the image; the tiles form a grid (every row
            start combined with every column start, as :func:`seglab.inference.tile_starts`).
        image_shape: ``(H, W)`` of the image.
        tile_size: ``(tile_h, tile_w)``; edge tiles may be smaller than this only if the image is.
        score_threshold, mask_threshold, min_size: as :func:`detections_to_instances`.
    """
    merger = TiledDetectionMerger(image_shape, sorted({o[0] for o in origins}), sorted({o[1] for o in origins}),
                                  tile_size, score_threshold=score_threshold, mask_threshold=mask_threshold)
    for det, origin in zip(tiles, origins, strict=True):
        merger.add(det, origin)
    return merger.finish(min_size)

