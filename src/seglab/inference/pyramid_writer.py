"""A tiled, compressed, pyramidal OME-TIFF written tile by tile (no level in memory).

Level 0 comes from a function returning any tile of it; tifffile writes tiles from a generator,
so only one tile is held at a time. Each reduced level (every 2nd row and column of the level
above: nearest neighbour, as label maps must be resampled) is gathered into a temporary zarr
array while the level above is written, then written from there, so the pyramid costs one pass
over level 0 plus a quarter, a sixteenth, ... The levels are stored as SubIFDs of the first
page with OME-XML metadata (axes ``YX``, physical pixel size when known), which QuPath,
Bio-Formats and tifffile (``tifffile.TiffFile(path).series[0].levels``) read as a pyramid.
Tiles are ``tile x tile`` (default 256), deflate (zlib) compressed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

TileFn = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> (y1 - y0) x (x1 - x0)


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
            the image border).
        tile: tile side, a multiple of 16.
        mpp: µm per level-0 pixel, recorded as the OME physical size.
        scratch: folder for the reduced levels' temporary arrays (default: the system's).
    """
    import tifffile
    import zarr

    dtype = np.dtype(dtype)
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
                    below = zarr.create_array(store=str(work / f"level{level + 1}.zarr"), shape=shapes[level + 1],
                                              chunks=(tile // 2, tile // 2), dtype=dtype, fill_value=0)
                options = {"subifds": len(shapes) - 1, "metadata": metadata} if level == 0 else {"subfiletype": 1}
                tif.write(_tiles(source, lshape, tile, dtype, below), shape=lshape, dtype=dtype, tile=(tile, tile),
                          compression=compression, **options)
                if below is not None:
                    source = _zarr_tiles(below)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tiles(tile_fn: TileFn, shape: tuple[int, int], tile: int, dtype: np.dtype, below) -> Iterator[np.ndarray]:
    """Full ``tile x tile`` tiles in raster order (zero-padded at the border). Every second pixel
    of each row of tiles goes to the next level, written as one band per row of tiles."""
    height, width = shape
    for y in range(0, height, tile):
        y1 = min(y + tile, height)
        band = np.zeros(((y1 - y + 1) // 2, (width + 1) // 2), dtype) if below is not None else None
        for x in range(0, width, tile):
            x1 = min(x + tile, width)
            data = np.asarray(tile_fn(y, y1, x, x1), dtype)
            if band is not None:
                band[:, x // 2 : (x1 + 1) // 2] = data[::2, ::2]
                if x1 == width and band.any():  # before the row's last tile: the writer may stop there
                    below[y // 2 : y // 2 + band.shape[0]] = band
            out = np.zeros((tile, tile), dtype)
            out[: y1 - y, : x1 - x] = data
            yield out


def banded(read: Callable[[int, int], np.ndarray]) -> TileFn:
    """A tile function over ``read(y0, y1)`` (whole-width rows) that reads each band of rows once:
    tiles come in raster order, so one read serves a whole row of tiles."""
    cache: dict[tuple[int, int], np.ndarray] = {}

    def tile(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if (y0, y1) not in cache:
            cache.clear()
            cache[(y0, y1)] = read(y0, y1)
        return cache[(y0, y1)][:, x0:x1]

    return tile


def _zarr_tiles(array) -> TileFn:
    return banded(lambda y0, y1: array[y0:y1])
