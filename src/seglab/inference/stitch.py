"""Block-wise instance decoding with stitching, fed by bands of probabilities.

Decoding a whole slide at once needs the whole probability map in memory. Instead the image is
cut into ``block x block`` cores; each core is decoded together with a ``margin`` of context on
every side, and its instances are merged into one global map:

1. an instance touching the cut edge of the decoded region (not the image border) is skipped:
   it is seen whole from a neighbouring block;
2. an instance is kept by the block whose core holds its centroid; blocks run in raster order,
   so an instance whose centroid falls in a block already done (its decoding there placed the
   centroid elsewhere) is kept now, and one whose centroid lies in a later block is left to it;
3. a kept instance that is already at least half covered by earlier instances is the same
   nucleus seen twice and is dropped; otherwise it takes the free pixels under it and a fresh id.

A nucleus that crosses a block border therefore gets exactly one id, ids are unique over the
image, and when the margin exceeds an object's diameter plus the decoder's context the result
equals decoding the whole image at once. Probabilities are held only for one row of blocks plus
its margins.

Reference: the overlap-tile strategy of Ronneberger et al., U-Net, MICCAI 2015, applied to the
instance maps; centroid ownership as in StarDist's block-wise ``predict_instances_big``
(Schmidt et al., MICCAI 2018).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future

import numpy as np

Decoder = Callable[[np.ndarray], np.ndarray]  # C x h x w probabilities -> h x w instance map


class BlockStitcher:
    """Merges per-block instance maps into one global map with unique ids.

    Args:
        out: the ``H x W`` integer output (zeros; a numpy array or memmap).
        block: core size in pixels.
        margin: context decoded around each core.
    """

    def __init__(self, out: np.ndarray, *, block: int, margin: int) -> None:
        self.out, self.block, self.margin = out, block, margin
        self.n_bx = -(-out.shape[1] // block)
        self.next_id = 1

    def add(self, labels: np.ndarray, y0: int, x0: int, block_index: int) -> None:
        """Merge the decoded region whose top-left pixel is ``(y0, x0)``.

        Args:
            labels: the region's local instance map (ids 1..n).
            y0, x0: the region's offset in the image.
            block_index: raster index of the block whose core this region surrounds.
        """
        n = int(labels.max(initial=0))
        if n == 0:
            return
        h, w = labels.shape
        height, width = self.out.shape
        flat = labels.ravel()
        area = np.bincount(flat, minlength=n + 1).astype(np.float64)
        rows, cols = np.divmod(np.arange(flat.size, dtype=np.int32), np.int32(w))
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.bincount(flat, weights=rows, minlength=n + 1) / area + y0
            cx = np.bincount(flat, weights=cols, minlength=n + 1) / area + x0
        owner = (cy // self.block) * self.n_bx + (cx // self.block)
        keep = (area > 0) & (owner <= block_index)
        keep &= ~self._touches_cut(labels, y0, x0, height, width, n)
        region = self.out[y0 : y0 + h, x0 : x0 + w]
        taken = region > 0
        covered = np.bincount(labels[taken], minlength=n + 1) / np.maximum(area, 1)
        keep &= covered < 0.5
        keep[0] = False
        if not keep.any():
            return
        new_ids = np.zeros(n + 1, dtype=np.int64)
        new_ids[keep] = self.next_id + np.arange(int(keep.sum()))
        self.next_id += int(keep.sum())
        write = keep[labels] & ~taken
        region[write] = new_ids[labels[write]]

    @staticmethod
    def _touches_cut(labels: np.ndarray, y0: int, x0: int, height: int, width: int, n: int) -> np.ndarray:
        """Ids touching an edge of the region that is not an image border."""
        edges = []
        if y0 > 0:
            edges.append(labels[0])
        if y0 + labels.shape[0] < height:
            edges.append(labels[-1])
        if x0 > 0:
            edges.append(labels[:, 0])
        if x0 + labels.shape[1] < width:
            edges.append(labels[:, -1])
        touched = np.zeros(n + 1, dtype=bool)
        if edges:
            touched[np.concatenate(edges)] = True
        return touched


def decode_blockwise(
    bands: Iterable[tuple[int, int, np.ndarray]],
    shape: tuple[int, int],
    decoder: Decoder,
    *,
    block: int = 1024,
    margin: int = 64,
    out: np.ndarray | None = None,
    pool: Executor | None = None,
) -> np.ndarray:
    """Decode instances block by block from a stream of probability row bands and stitch them.

    Args:
        bands: ``(y0, y1, probs)`` in row order covering ``[0, H)``, ``probs`` ``C x n x W``
            (what :func:`~seglab.inference.sliding.iter_prob_bands` yields).
        shape: the image's ``(H, W)``.
        decoder: turns a ``C x h x w`` probability crop into a local instance map.
        block: core size; memory holds ``block + 2 * margin`` rows of probabilities.
        margin: context around each core; should exceed the largest object's diameter.
        out: optional preallocated ``H x W`` integer array (e.g. a memmap), zero-filled.
        pool: optional executor (e.g. a process pool; ``decoder`` must then be picklable) that
            decodes blocks while the caller goes on producing bands; stitching stays in raster
            order in this thread. At most one block row waits in flight.

    Returns:
        The ``H x W`` instance map (``out`` when given, else int32), ids unique, 1..K.
    """
    height, width = shape
    if out is None:
        out = np.zeros(shape, dtype=np.int32)
    stitcher = BlockStitcher(out, block=block, margin=margin)
    pending: deque[tuple[Future | np.ndarray, int, int, int]] = deque()
    chunks: list[tuple[int, int, np.ndarray]] = []
    block_row = 0
    n_rows = -(-height // block)
    for y0, y1, probs in bands:
        chunks.append((y0, y1, np.asarray(probs)))
        while block_row < n_rows and y1 >= min(height, (block_row + 1) * block + margin):
            _submit_block_row(chunks, block_row, stitcher, decoder, pool, pending, width, height)
            block_row += 1
            start = block_row * block - margin
            chunks = [c for c in chunks if c[1] > start]
        _stitch_ready(pending, stitcher, keep=stitcher.n_bx)
    _stitch_ready(pending, stitcher, keep=0)
    return out


def _submit_block_row(chunks, block_row, stitcher, decoder, pool, pending, width: int, height: int) -> None:
    block, margin = stitcher.block, stitcher.margin
    ey0 = max(block_row * block - margin, 0)
    ey1 = min((block_row + 1) * block + margin, height)
    rows = np.concatenate([c[2][:, max(ey0 - c[0], 0) : ey1 - c[0]] for c in chunks if c[1] > ey0 and c[0] < ey1], axis=1)
    for bx in range(stitcher.n_bx):
        ex0, ex1 = max(bx * block - margin, 0), min((bx + 1) * block + margin, width)
        crop = np.ascontiguousarray(rows[:, :, ex0:ex1])
        result = decoder(crop) if pool is None else pool.submit(decoder, crop)
        pending.append((result, ey0, ex0, block_row * stitcher.n_bx + bx))


def _stitch_ready(pending: deque, stitcher: BlockStitcher, keep: int) -> None:
    """Stitch finished blocks in raster order; wait while more than ``keep`` are in flight."""
    while pending:
        result, ey0, ex0, index = pending[0]
        if isinstance(result, Future):
            if len(pending) <= keep and not result.done():
                return
            result = result.result()
        pending.popleft()
        stitcher.add(result, ey0, ex0, index)


def decode_rows_semantic(bands: Iterable[tuple[int, int, np.ndarray]], shape: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Arg-max class map from a stream of probability bands (semantic task)."""
    for y0, y1, probs in bands:
        probs = np.asarray(probs)
        if out is None:
            out = np.zeros(shape, dtype=np.uint8 if probs.shape[0] <= 256 else np.uint16)
        out[y0:y1] = probs.argmax(0)
    return out
