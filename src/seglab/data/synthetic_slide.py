"""Synthetic H&E-like whole slides of any size, written tile by tile (never held in memory).

A slide is white glass with elliptic tissue islands (pink, with purple nuclei on a jittered
lattice). Every pixel is a function of its level-0 coordinates alone, so the slide is written
from an iterator of tiles (tifffile), each pyramid level is evaluated directly at its own
resolution, and the true tissue mask is known at any downsample (:func:`island_mask`): tests and
benchmarks get ground truth for free.

Two layouts:

* ``"ome"``: a pyramidal OME-TIFF (levels as SubIFDs, ``PhysicalSizeX`` in µm), tifffile reads it;
* ``"svs"``: Aperio's layout (level 0 tiled JPEG whose ImageDescription starts
  ``Aperio Image Library`` and holds ``|MPP = ...``, a stripped thumbnail, then the reduced
  levels), which OpenSlide reads as an Aperio slide.

Example:
    >>> islands = write_synthetic_slide("slide.svs", 8192, 12288, mpp=0.25, layout="svs")
    >>> truth = island_mask(islands, (8192, 12288), downsample=32)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

GLASS = np.array([243.0, 241.0, 244.0])  # slightly tinted white
STROMA = np.array([233.0, 160.0, 195.0])  # eosin pink
NUCLEUS = np.array([95.0, 60.0, 150.0])  # haematoxylin purple


@dataclass
class Islands:
    """Ellipses in level-0 px: centres ``(n, 2)`` (y, x) and half-axes ``(n, 2)`` (ry, rx)."""

    centres: np.ndarray
    radii: np.ndarray


def make_islands(height: int, width: int, *, coverage: float = 0.15, count: int = 5, seed: int = 0) -> Islands:
    """``count`` non-overlapping ellipses covering about ``coverage`` of a ``height x width`` slide."""
    rng = np.random.default_rng(seed)
    area = coverage * height * width / count
    centres, radii = [], []
    for _ in range(count * 200):
        if len(centres) == count:
            break
        aspect = rng.uniform(0.6, 1.6)
        ry, rx = math.sqrt(area / math.pi * aspect), math.sqrt(area / math.pi / aspect)
        cy, cx = rng.uniform(ry * 1.05, height - ry * 1.05), rng.uniform(rx * 1.05, width - rx * 1.05)
        if all(abs(cy - y) > ry + r[0] or abs(cx - x) > rx + r[1] for (y, x), r in zip(centres, radii, strict=True)):
            centres.append((cy, cx))
            radii.append((ry, rx))
    if len(centres) < count:
        raise ValueError(f"cannot place {count} islands covering {coverage:.0%} of {height} x {width}")
    return Islands(np.array(centres), np.array(radii))


def _inside(islands: Islands, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Which level-0 points ``(y[:, None], x[None, :])`` lie in an island."""
    out = np.zeros((y.size, x.size), bool)
    for (cy, cx), (ry, rx) in zip(islands.centres, islands.radii, strict=True):
        rows = np.flatnonzero(np.abs(y - cy) <= ry)
        cols = np.flatnonzero(np.abs(x - cx) <= rx)
        if rows.size and cols.size:  # only the points in the island's bounding box
            ys, xs = y[rows[0]:rows[-1] + 1], x[cols[0]:cols[-1] + 1]
            out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] |= ((ys[:, None] - cy) / ry) ** 2 + ((xs[None, :] - cx) / rx) ** 2 <= 1.0
    return out


def island_mask(islands: Islands, shape0: tuple[int, int], downsample: float) -> np.ndarray:
    """The true tissue mask at ``downsample`` (level-0 px per mask px), sampled at pixel centres."""
    h, w = math.ceil(shape0[0] / downsample), math.ceil(shape0[1] / downsample)
    return _inside(islands, (np.arange(h) + 0.5) * downsample, (np.arange(w) + 0.5) * downsample)


def _hash(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random uint64 in [0, 2**32) for each pair ``(a[i], b[j])`` of non-negative integers."""
    h = (a[:, None] * np.uint64(73856093)) ^ (b[None, :] * np.uint64(19349663)) ^ np.uint64(seed * 83492791 + 1)
    return (h * np.uint64(2654435761)) % np.uint64(1 << 32)


def _nuclei(y: np.ndarray, x: np.ndarray, spacing: float, radius: float, seed: int) -> np.ndarray:
    """Disks of ``radius`` on a lattice of ``spacing``, jittered by a hash of the lattice cell."""
    cy, cx = (y // spacing).astype(np.uint64), (x // spacing).astype(np.uint64)
    h = _hash(cy, cx, seed)
    reach = spacing / 2 - radius
    jy = ((h % np.uint64(1000)).astype(np.float64) / 999 - 0.5) * 2 * reach
    jx = (((h // np.uint64(1000)) % np.uint64(1000)).astype(np.float64) / 999 - 0.5) * 2 * reach
    dy = y[:, None] - (cy[:, None] * spacing + spacing / 2 + jy)
    dx = x[None, :] - (cx[None, :] * spacing + spacing / 2 + jx)
    return dy * dy + dx * dx <= radius * radius


def render(islands: Islands, y: np.ndarray, x: np.ndarray, *, mpp: float = 0.25, seed: int = 0) -> np.ndarray:
    """The slide's RGB uint8 at level-0 points ``y`` (rows) x ``x`` (columns); each pixel depends
    on its own coordinates only (the noise too), so any region renders as the tiles written."""
    tissue = _inside(islands, y, x)
    out = np.broadcast_to(GLASS.astype(np.int16), (*tissue.shape, 3)).copy()
    if tissue.any():
        nuclei = _nuclei(y, x, spacing=12.0 / mpp, radius=3.5 / mpp, seed=seed) & tissue
        out[tissue] = STROMA
        out[nuclei] = NUCLEUS
    noise = (_hash(y.astype(np.uint64), x.astype(np.uint64), seed) % np.uint64(7)).astype(np.int16) - 3
    return np.clip(out + noise[..., None], 0, 255).astype(np.uint8)


def _tiles(islands: Islands, shape: tuple[int, int], downsample: float, tile: int, mpp: float,
           seed: int) -> Iterator[np.ndarray]:
    for y0 in range(0, shape[0], tile):
        for x0 in range(0, shape[1], tile):
            ys = (np.arange(y0, y0 + tile) + 0.5) * downsample
            xs = (np.arange(x0, x0 + tile) + 0.5) * downsample
            yield render(islands, ys, xs, mpp=mpp, seed=seed)


def write_synthetic_slide(path: str | os.PathLike[str], height: int, width: int, *, mpp: float = 0.25,
                          levels: int = 3, tile: int = 256, layout: str = "ome", coverage: float = 0.15,
                          islands: int = 5, seed: int = 0) -> Islands:
    """Write a synthetic slide tile by tile (see the module docstring) and return its islands.

    Args:
        levels: pyramid levels, each half the previous one.
        layout: ``"ome"`` (pyramidal OME-TIFF, zlib) or ``"svs"`` (Aperio, JPEG).
    """
    import tifffile

    shapes = [(math.ceil(height / 2**i), math.ceil(width / 2**i)) for i in range(levels)]
    geometry = make_islands(height, width, coverage=coverage, count=islands, seed=seed)
    tiles = lambda i: _tiles(geometry, shapes[i], 2.0**i, tile, mpp, seed)  # noqa: E731
    svs = layout == "svs"
    opts = {"tile": (tile, tile), "photometric": "rgb", "dtype": np.uint8,
            "compression": "jpeg" if svs else "zlib", "compressionargs": {"level": 90 if svs else 1}}
    with tifffile.TiffWriter(path, bigtiff=height * width > 2**29, ome=not svs) as tif:
        if svs:
            head = f"Aperio Image Library v12.0.0\r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q=90"
            tif.write(tiles(0), shape=(*shapes[0], 3), description=f"{head}|AppMag = {10 / mpp:g}|MPP = {mpp}",
                      metadata=None, **opts)
            scale = max(1, math.ceil(max(height, width) / 768))
            thumb = render(geometry, (np.arange(height // scale) + 0.5) * scale, (np.arange(width // scale) + 0.5) * scale,
                           mpp=mpp, seed=seed)
            tif.write(thumb, photometric="rgb", description="Aperio Image Library v12.0.0\r\nthumbnail", metadata=None)
            for i in range(1, levels):
                tif.write(tiles(i), shape=(*shapes[i], 3), subfiletype=0, metadata=None,  # as Aperio writes them
                          description=f"Aperio Image Library v12.0.0\r\n{width}x{height} -> {shapes[i][1]}x{shapes[i][0]}",
                          **opts)
        else:
            meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeY": mpp, "PhysicalSizeYUnit": "µm"}
            tif.write(tiles(0), shape=(*shapes[0], 3), subifds=levels - 1, metadata=meta, **opts)
            for i in range(1, levels):
                tif.write(tiles(i), shape=(*shapes[i], 3), subfiletype=1, metadata=None, **opts)
    return geometry
