"""Label maps of any region of a large image, for the block pipeline (:mod:`seglab.inference.slide_run`).

:class:`RegionProbs` gives the sliding-window probabilities of a region exactly as a pass over
the whole image gives them: the tiles lie on the image's global grid
(:func:`~seglab.inference.sliding.tile_starts`) and every tile that overlaps the region is
blended in, so a block and its margin see the same probabilities as the one-pass predictor
(to float rounding). Tiles shared with the next block to the right are kept (a column of tiles,
assuming the next region starts ``2 * margin`` before this one ends, as blocks do);
those shared with the block row below are run again (keeping them would hold a row of tiles
as wide as the slide).

Background skipping: each tile *owns* a cell of the image, from the middle of its overlap with
the previous tile to the middle of its overlap with the next (the cells partition the image, and
a tile's blending weight is highest there). A tile whose cell (in level-0 pixels: the cell times
``scale``) holds no tissue by ``covers(y0, y1, x0, x1)`` is not run; its probabilities are the
background (``[1, 0, ...]`` for soft-max stacks, zeros for a foreground-first stack), and it is
counted as skipped. Every tissue pixel thus lies in the cell of a tile that runs; near the tissue
border its probability blends with the background of skipped neighbours. A region with no tissue
under any of its tiles decodes to nothing.

:class:`RegionLabels` turns those probabilities into the region's local labels (the checkpoint's
decoder, or the arg-max class for the semantic task); :class:`RegionDetections` runs Mask R-CNN
over tiles of the region (its own tile grid: detections are merged by box centre, not blended).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from seglab.inference.sliding import tile_starts, weight_map

Covers = Callable[[int, int, int, int], bool]  # (y0, y1, x0, x1) in level-0 px -> any tissue there


def read_region(source: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``(y1 - y0) x (x1 - x0) x C`` pixels of a source (by region where it reads regions)."""
    if hasattr(source, "read_region"):
        return source.read_region(y0, y1, x0, x1)
    return source.read_rows(y0, y1)[:, x0:x1]


class TileCounts:
    """Tile bookkeeping shared by the engines: tissue test per tile and run/skipped counts."""

    def __init__(self, covers: Covers | None, scale: float) -> None:
        self.covers, self.scale = covers, scale
        self.seen: dict[tuple[int, int], bool] = {}  # tile origin -> has tissue
        self.passes = 0

    def has_tissue(self, y: int, x: int, h: int, w: int, *, key: tuple[int, int] | None = None) -> bool:
        """Whether the box ``[y, y + h) x [x, x + w)`` (pixels of the image) holds tissue; the
        answer is counted once per ``key`` (default: the box's corner, i.e. the tile)."""
        key = (y, x) if key is None else key
        if key not in self.seen:
            s = self.scale
            self.seen[key] = self.covers is None or bool(self.covers(int(y * s), int(np.ceil((y + h) * s)),
                                                                    int(x * s), int(np.ceil((x + w) * s))))
        return self.seen[key]

    @property
    def run(self) -> int:
        return sum(self.seen.values())

    @property
    def skipped(self) -> int:
        return len(self.seen) - self.run


class RegionProbs(TileCounts):
    """Sliding-window probabilities of regions of a source, on the whole image's tile grid.

    Args:
        predictor: a :class:`~seglab.inference.predictor.Predictor` (its tile, overlap, blend,
            batch size, preprocessing and model call).
        source: the image at the model's resolution (``shape``, ``read_region`` or ``read_rows``).
        covers: tissue test in level-0 pixels, or ``None`` (run every tile).
        scale: level-0 pixels per source pixel.
        value_range: the whole image's intensity range (:meth:`Predictor.intensity_range`).
    """

    def __init__(self, predictor: Any, source: Any, *, covers: Covers | None = None, scale: float = 1.0,
                 value_range: Any = None) -> None:
        super().__init__(covers, scale)
        height, width = source.shape[:2]
        self.tile = tile = int(predictor.tile)
        if min(height, width) < tile:
            raise ValueError(f"region prediction needs an image of at least one tile ({tile} px), got {height}x{width}")
        self.predictor, self.source, self.value_range = predictor, source, value_range
        self.ys, self.xs = tile_starts(height, tile, predictor.overlap), tile_starts(width, tile, predictor.overlap)
        self.own_y, self.own_x = owned_cells(self.ys, tile, height), owned_cells(self.xs, tile, width)
        self.weights = weight_map(tile, tile, predictor.blend).numpy()
        self.fn = predictor._predict_fn()
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.background: np.ndarray | None = None

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """``K x h x w`` float32 probabilities of ``[y0, y1) x [x0, x1)``, or ``None`` without tissue."""
        t = self.tile
        origins = [(ty, tx) for ty in self.ys if ty < y1 and ty + t > y0 for tx in self.xs if tx < x1 and tx + t > x0]
        live = [o for o in origins if self._live(*o)]
        if not live:
            self.cache.clear()
            return None
        t0, t1 = min(o[0] for o in live), max(o[0] for o in live) + t
        s0, s1 = min(o[1] for o in live), max(o[1] for o in live) + t
        # where the probabilities may differ from the background (the rest is exactly background)
        self.live_box = (max(t0, y0) - y0, min(t1, y1) - y0, max(s0, x0) - x0, min(s1, x1) - x0)
        todo = [o for o in live if o not in self.cache]
        if todo:
            self._run(todo)
        acc: np.ndarray | None = None
        norm = np.zeros((y1 - y0, x1 - x0), np.float32)
        for ty, tx in origins:
            a, b, c, d = max(ty, y0), min(ty + t, y1), max(tx, x0), min(tx + t, x1)
            probs = self.cache.get((ty, tx))
            part = self.background[:, None, None] if probs is None else probs[:, a - ty : b - ty, c - tx : d - tx]
            if acc is None:
                acc = np.zeros((len(self.background), y1 - y0, x1 - x0), np.float32)
            w = self.weights[a - ty : b - ty, c - tx : d - tx]
            acc[:, a - y0 : b - y0, c - x0 : d - x0] += w * part
            norm[a - y0 : b - y0, c - x0 : d - x0] += w
        used = set(origins)
        reach = x1 - 2 * max(int(self.predictor.margin), 1)  # where the next block's region starts
        self.cache = {o: p for o, p in self.cache.items() if o in used and o[1] + t > reach}
        acc /= norm  # in place: a block's stack is the largest array here (57 MB at 2176 px)
        return acc

    def _live(self, ty: int, tx: int) -> bool:
        """A tile runs when its own cell holds tissue (module docstring)."""
        (a, b), (c, d) = self.own_y[ty], self.own_x[tx]
        return self.has_tissue(a, c, b - a, d - c, key=(ty, tx))

    def _run(self, origins: list[tuple[int, int]]) -> None:
        t, p = self.tile, self.predictor
        r0, r1 = min(o[0] for o in origins), max(o[0] for o in origins) + t
        c0, c1 = min(o[1] for o in origins), max(o[1] for o in origins) + t
        pixels = p.preprocess(read_region(self.source, r0, r1, c0, c1), self.source.path, self.value_range)
        with torch.inference_mode():
            for i in range(0, len(origins), p.batch_size):
                batch = origins[i : i + p.batch_size]
                x = torch.stack([pixels[:, y - r0 : y - r0 + t, c - c0 : c - c0 + t] for y, c in batch])
                out = self.fn(x.to(p.device)).float().cpu().numpy()
                self.passes += len(batch)
                for o, probs in zip(batch, out, strict=True):
                    self.cache[o] = probs
        if self.background is None:
            self.background = background_probs(p, out.shape[1])


def owned_cells(starts: list[int], tile: int, size: int) -> dict[int, tuple[int, int]]:
    """Each tile's own cell along one axis: from the middle of its overlap with the previous tile
    to the middle of its overlap with the next (the cells partition ``[0, size)``)."""
    cuts = [0] + [(starts[i - 1] + tile + starts[i]) // 2 for i in range(1, len(starts))] + [size]
    return {s: (cuts[i], cuts[i + 1]) for i, s in enumerate(starts)}


def background_probs(predictor: Any, channels: int) -> np.ndarray:
    """The decoder input of a pure background pixel: ``[1, 0, ...]`` for a soft-max stack
    (semantic task, ``three_class``, plain binary), zeros for a foreground-first stack."""
    vec = np.zeros(channels, np.float32)
    if predictor.task == "semantic" or predictor.method in (None, "three_class"):
        vec[0] = 1.0
    return vec


class RegionLabels:
    """Local labels of regions: :class:`RegionProbs` then the checkpoint's decoder (instance task)
    or the arg-max class (semantic task).

    Calling it with a region returns ``(labels, foreground)``: the ``h x w`` local map and the
    foreground probability (the COCO/GeoJSON score; ``None`` for the semantic task), or
    ``(None, None)`` where no tile has tissue. The call is :meth:`infer` (reading and the
    network) then :meth:`decode` (the decoder), which the block pipeline runs on two threads.
    """

    def __init__(self, predictor: Any, source: Any, **kwargs: Any) -> None:
        self.predictor = predictor
        self.probs = RegionProbs(predictor, source, **kwargs)

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.decode(self.infer(y0, y1, x0, x1))

    def infer(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """The network's part: the region's probabilities and the box where they differ from the
        background (``None`` without tissue). :meth:`decode` finishes it, possibly on another thread."""
        probs = self.probs(y0, y1, x0, x1)
        return None if probs is None else (probs, self.probs.live_box)

    def decode(self, inferred: tuple[np.ndarray, tuple[int, int, int, int]] | None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The post-processing part: ``(labels, foreground)`` of what :meth:`infer` returned."""
        if inferred is None:
            return None, None
        probs, (a, b, c, d) = inferred
        p = self.predictor
        if p.task == "semantic":
            return probs.argmax(0).astype(np.uint8 if probs.shape[0] <= 256 else np.uint16), None
        foreground = 1 - probs[0] if p.method in (None, "three_class") else probs[0]
        # outside the live box: background probabilities, nothing to decode
        if (a, b, c, d) == (0, probs.shape[1], 0, probs.shape[2]):
            return p.decode_probs(probs), foreground
        labels = np.zeros(probs.shape[1:], np.int32)
        labels[a:b, c:d] = p.decode_probs(np.ascontiguousarray(probs[:, a:b, c:d]))
        return labels, foreground

    @property
    def tiles(self) -> TileCounts:
        return self.probs
