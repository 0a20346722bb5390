"""Block-wise instance decoding of an image held in memory, fed by bands of probabilities.

Decoding a whole image at once needs its whole probability map. Instead the image is cut into
``block x block`` cores, each decoded with a ``margin`` of context on every side, and the pieces
are joined across block faces by :class:`~seglab.inference.blocks.UnionStitcher` (a union-find
over provisional ids; objects of any size, also wider than the margin or a block, get one id).
After the last block the ids are made dense (1..K, numbered by first appearance in raster order
of blocks) in one pass over the map. Probabilities are held only for one row of blocks plus its
margins. Large slides use the same stitching without any map in memory
(:mod:`seglab.inference.slide_run`).

Reference: the overlap-tile strategy of Ronneberger et al., U-Net, MICCAI 2015, applied to the
instance maps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future

import numpy as np

from seglab.inference.blocks import BlockGrid, UnionStitcher

Decoder = Callable[[np.ndarray], np.ndarray]  # C x h x w probabilities -> h x w instance map


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
        margin: context around each core (at least 1); objects wider than it are joined
            across blocks too, but the decoder sees less context around them.
        out: optional preallocated ``H x W`` integer array (e.g. a memmap), zero-filled.
        pool: optional executor (e.g. a process pool; ``decoder`` must then be picklable) that
            decodes blocks while the caller goes on producing bands; stitching stays in raster
            order in this thread. At most one block row waits in flight.

    Returns:
        The ``H x W`` instance map (``out`` when given, else int32), ids unique and dense, 1..K.
    """
    height, width = shape
    if out is None:
        out = np.zeros(shape, dtype=np.int32)
    grid = BlockGrid(height, width, block, max(margin, 1))
    stitcher = UnionStitcher(grid)
    pending: deque[tuple[Future | np.ndarray, int, int]] = deque()
    chunks: list[tuple[int, int, np.ndarray]] = []
    block_row = 0
    for y0, y1, probs in bands:
        chunks.append((y0, y1, np.asarray(probs)))
        while block_row < grid.n_by and y1 >= grid.extended(block_row, 0)[1]:
            _submit_block_row(chunks, block_row, grid, decoder, pool, pending)
            block_row += 1
            start = block_row * block - grid.margin
            chunks = [c for c in chunks if c[1] > start]
        _stitch_ready(pending, stitcher, out, keep=grid.n_bx)
    _stitch_ready(pending, stitcher, out, keep=0)
    roots = stitcher.uf.roots()
    dense = np.cumsum(roots == np.arange(roots.size)) - 1  # root id -> 1..K in order of first appearance
    final = dense[roots].astype(out.dtype)
    for y in range(0, height, block):
        out[y : y + block] = final[out[y : y + block]]
    return out


def _submit_block_row(chunks, block_row: int, grid: BlockGrid, decoder, pool, pending) -> None:
    ey0, ey1 = grid.extended(block_row, 0)[:2]
    rows = np.concatenate([c[2][:, max(ey0 - c[0], 0) : ey1 - c[0]] for c in chunks if c[1] > ey0 and c[0] < ey1], axis=1)
    for bx in range(grid.n_bx):
        ex0, ex1 = grid.extended(block_row, bx)[2:]
        crop = np.ascontiguousarray(rows[:, :, ex0:ex1])
        result = decoder(crop) if pool is None else pool.submit(decoder, crop)
        pending.append((result, block_row, bx))


def _stitch_ready(pending: deque, stitcher: UnionStitcher, out: np.ndarray, keep: int) -> None:
    """Stitch finished blocks in raster order; wait while more than ``keep`` are in flight."""
    while pending:
        result, by, bx = pending[0]
        if isinstance(result, Future):
            if len(pending) <= keep and not result.done():
                return
            result = result.result()
        pending.popleft()
        core = stitcher.add(by, bx, result)[0]
        if core is not None:
            y0, y1, x0, x1 = stitcher.grid.core(by, bx)
            out[y0:y1, x0:x1] = core


def decode_rows_semantic(bands: Iterable[tuple[int, int, np.ndarray]], shape: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Arg-max class map from a stream of probability bands (semantic task)."""
    for y0, y1, probs in bands:
        probs = np.asarray(probs)
        if out is None:
            out = np.zeros(shape, dtype=np.uint8 if probs.shape[0] <= 256 else np.uint16)
        out[y0:y1] = probs.argmax(0)
    return out
