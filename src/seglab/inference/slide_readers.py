"""The three back ends behind :func:`seglab.inference.slide.open_slide`.

Each reader answers ``levels`` (``(H, W)`` per pyramid level, level 0 first), ``downsamples``,
``channels``, ``dtype``, ``mpp`` (µm/px at level 0 or ``None``) and
``read(level, y0, x0, h, w)``: an ``h x w x C`` array of a region inside that level, in the
level's own pixel coordinates. Bounds, padding and errors are the caller's
(:class:`~seglab.inference.slide.SlideSource`).

* :class:`OpenSlideReader`: the vendor formats OpenSlide knows (Aperio ``.svs``, Hamamatsu
  ``.ndpi`` / ``.vms``, 3DHISTECH ``.mrxs``, Leica ``.scn``, Ventana ``.bif``, Philips TIFF,
  DICOM WSI, ...), always 8-bit RGB; its RGBA (transparent outside the scanned area) is composed
  over white.
* :class:`TiffReader`: plain, pyramidal and OME-TIFF through tifffile, each level a zarr array
  whose chunks are the TIFF's tiles or strips (only the tiles under a region are decoded,
  JPEG-compressed ones included); an uncompressed single-level TIFF is memory-mapped.
* :class:`PillowReader`: PNG, JPEG, BMP, ... one level held in memory (small by nature).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import DataError

_DAMAGE = re.compile(r"invalid|corrupt|truncat|short read|out of range", re.IGNORECASE)


class OpenSlideReader:
    """A slide OpenSlide opens (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = path
        try:
            self.slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as exc:
            raise DataError(path, f"damaged or truncated slide (OpenSlide: {_first_line(exc)})") from None
        self.vendor = self.slide.properties.get("openslide.vendor", "unknown")
        self.levels = [(int(h), int(w)) for w, h in self.slide.level_dimensions]
        self.downsamples = [float(d) for d in self.slide.level_downsamples]
        self.channels, self.dtype = 3, np.dtype(np.uint8)
        values = [self.slide.properties.get(f"openslide.mpp-{axis}") for axis in "xy"]
        known = [float(v) for v in values if v not in (None, "")]
        self.mpp = float(np.mean(known)) if known else None

    def read(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        ds = self.downsamples[level]
        rgba = np.asarray(self.slide.read_region((round(x0 * ds), round(y0 * ds)), level, (w, h)))
        alpha = rgba[..., 3:4].astype(np.uint16)
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        # OpenSlide returns un-premultiplied RGBA: compose over white, transparent -> white
        return ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)

    def close(self) -> None:
        self.slide.close()


@contextmanager
def _tifffile_warnings() -> Iterator[list[str]]:
    """Collect what tifffile logs while parsing (it logs damaged IFDs and skips them)."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger, handler = logging.getLogger("tifffile"), _Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


class TiffReader:
    """A plain, pyramidal or OME-TIFF read tile-lazily through tifffile and zarr."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path, self.vendor = path, "tiff"
        try:
            with _tifffile_warnings() as warnings:
                self.tif = tifffile.TiffFile(path)
                series = self.tif.series[0]
                levels = list(series.levels)
                axes = series.axes
        except DataError:
            raise
        except Exception as exc:
            raise DataError(path, f"damaged or unreadable TIFF ({_first_line(exc)})") from None
        try:
            damage = [w for w in warnings if _DAMAGE.search(w)]
            if damage:
                raise DataError(path, f"damaged or truncated TIFF (tifffile: {_first_line(damage[0])})")
            self._check_complete(levels)
            self._layout(axes, [tuple(level.shape) for level in levels])
            self.mpp = _tiff_mpp(self.tif)
            self.arrays, self._store = self._open_arrays(series, levels)
        except BaseException:
            self.tif.close()
            raise

    def _check_complete(self, levels: list[Any]) -> None:
        """Every level's tile data lies inside the file (a truncated copy fails here, not mid-run)."""
        size = os.path.getsize(self.path)
        for i, level in enumerate(levels):
            for page in level.pages:
                if page is None:
                    raise DataError(self.path, f"pyramid level {i} is missing pages")
                ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(page.databytecounts, np.int64)
                if ends.size and int(ends.max()) > size:
                    raise DataError(self.path, f"truncated file: pyramid level {i} needs {int(ends.max())} bytes, the file has {size}")

    def _layout(self, axes: str, shapes: list[tuple[int, ...]]) -> None:
        """Where Y, X and the channels sit; refuse stacks (Z, T, several samples)."""
        size = dict(zip(axes, shapes[0], strict=True))
        several = [a for a in axes if a not in "YX" and size[a] > 1]
        # one axis beside Y and X holds the channels: samples, OME's C, or (as read_image takes
        # a C x H x W TIFF) an unnamed one of at most 4; anything more is a stack, not an image
        if len(several) > 1 or several and several[0] not in "SC" and size[several[0]] > 4:
            raise DataError(self.path, f"a 2-D image with channels expected, the TIFF holds axes {axes!r} of shape {shapes[0]}")
        self.axes = axes
        self.channel_axis = several[0] if several else None
        self.levels = [(int(s[axes.index("Y")]), int(s[axes.index("X")])) for s in shapes]
        for i in range(1, len(self.levels)):
            if self.levels[i][0] > self.levels[i - 1][0] or self.levels[i][1] > self.levels[i - 1][1]:
                raise DataError(self.path, f"pyramid level {i} {self.levels[i]} is larger than level {i - 1} {self.levels[i - 1]}")
        h0, w0 = self.levels[0]
        self.downsamples = [(h0 / h + w0 / w) / 2 for h, w in self.levels]
        self.channels = shapes[0][axes.index(self.channel_axis)] if self.channel_axis else 1

    def _open_arrays(self, series: Any, levels: list[Any]) -> tuple[list[Any], Any]:
        import tifffile
        import zarr

        self.dtype = np.dtype(series.dtype)
        if len(levels) == 1:
            try:  # uncompressed and contiguous: the OS pages in the rows read
                return [tifffile.memmap(self.path, mode="r")], None
            except Exception:
                pass
        store = series.aszarr()
        root = zarr.open(store, mode="r")
        arrays = [root] if hasattr(root, "shape") else [root[str(i)] for i in range(len(levels))]
        return arrays, store

    def read(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        index = tuple(slice(y0, y0 + h) if a == "Y" else slice(x0, x0 + w) if a == "X"
                      else slice(None) if a == self.channel_axis else 0 for a in self.axes)
        region = np.asarray(self.arrays[level][index])
        kept = [a for a in self.axes if a in "YX" or a == self.channel_axis]
        region = np.moveaxis(region, [kept.index(a) for a in "YX"], [0, 1])
        return region if region.ndim == 3 else region[..., None]

    def close(self) -> None:
        if self._store is not None and hasattr(self._store, "close"):
            self._store.close()
        self.arrays = []
        self.tif.close()


def _tiff_mpp(tif: Any) -> float | None:
    from seglab.data.resolution import mpp_from_tiff

    return mpp_from_tiff(tif)


class PillowReader:
    """A PNG / JPEG / BMP image: one level, held in memory."""

    def __init__(self, path: Path) -> None:
        from seglab.data.io import read_image
        from seglab.data.resolution import image_mpp

        self.path, self.vendor = path, "image"
        self.image = read_image(path)
        self.levels, self.downsamples = [tuple(self.image.shape[:2])], [1.0]
        self.channels, self.dtype = int(self.image.shape[2]), self.image.dtype
        self.mpp = image_mpp(path)

    def read(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return self.image[y0:y0 + h, x0:x0 + w]

    def close(self) -> None:
        self.image = np.zeros((0, 0, self.channels), self.dtype)


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
