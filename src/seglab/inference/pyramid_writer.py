"""A tiled, compressed, pyramidal OME-TIFF written tile by tile (no level in memory).

Level 0 comes from a function returning any tile of it; tifffile writes tiles from a generator,
so only one tile is held at a time. Each reduced level (every 2nd row and column of the level
above: nearest neighbour, as label maps must be resampled) is gathered into a temporary chunked
array on disk (:class:`~seglab.inference.scratch.ChunkedArray`) while the level above is
written, then written from there, so the pyramid costs one pass over level 0 plus a quarter, a
sixteenth, ... The levels are stored as SubIFDs of the first page with OME-XML metadata (axes ``YX``, physical pixel size when known), which QuPath,
Bio-Formats and tifffile (``tifffile.TiffFile(path).series[0].levels``) read as a pyramid.
Tiles are ``tile x tile`` (default 256), deflate (zlib) compressed.

Most tiles of a slide's label map hold no object: a tile function returns ``None`` for an
all-zero tile, and such tiles (also those of the reduced levels) are written as the one
compressed zero tile, encoded once. Tiles are encoded here with tifffile's own codec, so the file
is byte for byte what tifffile would write from the arrays.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from seglab.inference.scratch import ChunkedArray

TileFn = Callable[[int, int, int, int], np.ndarray | None]  # (y0, y1, x0, x1) -> (y1 - y0) x (x1 - x0), None: zeros
CODECS = {"zlib": 8, "zstd": 50000, "lzw": 5}  # compression name -> TIFF tag


def level_shapes(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """``(H, W)`` of every level: halved (rounded up) until the longest side fits one tile."""
    shapes = [tuple(shape)]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes  # type: ignore[return-value]


def write_pyramid(
    path: str | Path, shape: tuple[int, int], dtype: np.dtype | type, tile_fn: TileFn, *, tile: int = 256,
    mpp: float | None = None, scratch: str | Path | None = None, compression: str = "zlib",
) -> None:
    """Write a pyramidal OME-TIFF whose level 0 is ``tile_fn``'s tiles.

    Args:
        path: the file (the caller makes it atomic: write to a temporary name, then rename).
        shape: level 0's ``(H, W)``.
        dtype: the pixel type (e.g. uint32 instance ids).
        tile_fn: returns level 0's pixels in ``[y0, y1) x [x0, x1)`` (tile-aligned, clipped at
            the image border), or ``None`` when they are all 0.
        tile: tile side, a multiple of 16.
        mpp: µm per level-0 pixel, recorded as the OME physical size.
        scratch: folder for the reduced levels' temporary arrays (default: the system's).
        compression: ``"zlib"`` (deflate), ``"zstd"`` or ``"lzw"``.
    """
    import tifffile

    dtype = np.dtype(dtype)
    tag = CODECS[compression]
    encode = tifffile.TIFF.COMPRESSORS[tag]
    shapes = level_shapes(shape, tile)
    metadata: dict = {"axes": "YX"}
    if mpp:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    work = Path(tempfile.mkdtemp(prefix=".pyramid.", dir=scratch))
    try:
        with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
            source = tile_fn
            for level, lshape in enumerate(shapes):
                below = None
                if level + 1 < len(shapes):
                    below = ChunkedArray(work / f"level{level + 1}", shapes[level + 1], dtype, chunk=tile // 2)
                options = {"subifds": len(shapes) - 1, "metadata": metadata} if level == 0 else {"subfiletype": 1}
                tif.write(_tiles(source, lshape, tile, dtype, below, encode), shape=lshape, dtype=dtype,
                          tile=(tile, tile), compression=tag, **options)
                if below is not None:
                    source = below.read_nonzero
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tiles(tile_fn: TileFn, shape: tuple[int, int], tile: int, dtype: np.dtype, below: ChunkedArray | None,
           encode: Callable[[np.ndarray], bytes]) -> Iterator[bytes]:
    """Encoded ``tile x tile`` tiles in raster order (zero-padded at the border; an all-zero tile
    is the one encoded zero tile). Every second pixel of each row of tiles goes to the next
    level, written as one band per row of tiles."""
    height, width = shape
    zero = encode(np.zeros((tile, tile), dtype))
    for y in range(0, height, tile):
        y1 = min(y + tile, height)
        band = np.zeros(((y1 - y + 1) // 2, (width + 1) // 2), dtype) if below is not None else None
        for x in range(0, width, tile):
            x1 = min(x + tile, width)
            data = tile_fn(y, y1, x, x1)
            if data is not None:
                data = np.asarray(data, dtype)
                if band is not None:
                    band[:, x // 2 : (x1 + 1) // 2] = data[::2, ::2]
            if band is not None and x1 == width and band.any():  # before the row's last tile: the writer may stop there
                below[y // 2 : y // 2 + band.shape[0]] = band  # all-zero chunks are not stored
            if data is None:
                yield zero
                continue
            if data.shape != (tile, tile):
                data = np.pad(data, ((0, tile - data.shape[0]), (0, tile - data.shape[1])))
            yield encode(np.ascontiguousarray(data))
