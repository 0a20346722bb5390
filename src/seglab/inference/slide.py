"""Whole slides and large images opened by region and pyramid level, never whole.

:func:`open_slide` opens any input the prediction side takes and returns a :class:`SlideSource`:

* the formats OpenSlide reads (Aperio ``.svs``, Hamamatsu ``.ndpi`` / ``.vms``, 3DHISTECH
  ``.mrxs``, Leica ``.scn``, Ventana ``.bif``, Philips TIFF, a DICOM WSI file or its folder, ...);
* plain, pyramidal and OME-TIFF through tifffile + zarr (tile-lazy, JPEG tiles included);
* PNG, JPEG, BMP, ... through Pillow (one level, in memory).

Every region comes back ``h x w x C`` in the stored dtype, in the level's own pixel
coordinates. Outside the image is white (the glass) for a 3- or 4-channel image and 0 otherwise;
OpenSlide's transparent pixels are white as well. µm/px comes from the file
(:mod:`seglab.data.resolution`, OpenSlide's ``openslide.mpp-x``) unless ``mpp=`` overrides it.

Example:
    >>> with open_slide("slide.svs") as slide:
    ...     slide.levels, slide.mpp              # [(40000, 60000), (10000, 15000), ...], 0.25
    ...     tile = slide.read_region(1, 512, 1024, 256, 256)   # 256 x 256 x 3 uint8, level 1
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import DataError
from seglab.inference.slide_readers import OpenSlideReader, PillowReader, TiffReader

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
THUMBNAIL_SIDE = 1536  # longest side of the low-resolution image tissue detection works on


def fill_value(channels: int, dtype: np.dtype) -> float:
    """What lies outside the image: white glass for colour images, 0 (dark) otherwise."""
    if channels not in (3, 4):
        return 0
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


class SlideSource:
    """An opened slide or image (see the module docstring); a context manager.

    Attributes:
        path: the file (or DICOM folder).
        vendor: the format read (OpenSlide's vendor name, ``"tiff"`` or ``"image"``).
        levels: ``(H, W)`` of each pyramid level, level 0 (full resolution) first.
        downsamples: level-0 pixels per pixel of each level (1.0 for level 0).
        channels, dtype: as stored (OpenSlide: 3, uint8).
        mpp: µm per level-0 pixel, or ``None`` when neither the file nor ``mpp=`` says.
    """

    def __init__(self, reader: Any, path: Path, mpp: float | None = None) -> None:
        self._reader, self.path, self.vendor = reader, path, reader.vendor
        self.levels: list[tuple[int, int]] = list(reader.levels)
        self.downsamples: list[float] = list(reader.downsamples)
        self.channels, self.dtype = int(reader.channels), np.dtype(reader.dtype)
        self.file_mpp: float | None = reader.mpp
        self.mpp: float | None = reader.mpp if mpp is None else float(mpp)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Level 0 as ``(H, W, C)``."""
        return (*self.levels[0], self.channels)

    def read_region(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """An ``h x w x C`` region of ``level`` whose top-left pixel is ``(y0, x0)`` of that level.

        The region may reach outside the level: that part is :func:`fill_value`.

        Raises:
            DataError: a level the pyramid does not have, or tiles that cannot be read.
        """
        if not 0 <= level < len(self.levels):
            raise DataError(self.path, f"pyramid level {level} does not exist (the slide has levels 0-{len(self.levels) - 1})")
        if h <= 0 or w <= 0:
            raise ValueError(f"region size must be positive, got {h} x {w}")
        height, width = self.levels[level]
        ya, yb, xa, xb = max(y0, 0), min(y0 + h, height), max(x0, 0), min(x0 + w, width)
        inside = ya < yb and xa < xb
        if inside and (ya, yb, xa, xb) == (y0, y0 + h, x0, x0 + w):
            return self._read(level, y0, x0, h, w)
        out = np.full((h, w, self.channels), fill_value(self.channels, self.dtype), self.dtype)
        if inside:
            out[ya - y0:yb - y0, xa - x0:xb - x0] = self._read(level, ya, xa, yb - ya, xb - xa)
        return out

    def _read(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        if self._reader is None:
            raise DataError(self.path, "slide is closed")
        try:
            return self._reader.read(level, y0, x0, h, w)
        except DataError:
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()
            why = text[0] if text else type(exc).__name__
            raise DataError(self.path, f"unreadable region {h} x {w} at ({y0}, {x0}) of level {level} "
                                       f"(damaged or truncated slide? {why})") from None

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __enter__(self) -> SlideSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SlideSource({str(self.path)!r}, {self.vendor}, levels={self.levels}, mpp={self.mpp})"


def _dicom_file(folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".dcm", ""))
    if not files:
        raise DataError(folder, "a folder is read as a DICOM slide, but it holds no .dcm file")
    return files[0]


def _openslide_format(path: Path) -> str | None:
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path))
    except ImportError:
        return None
    except Exception:  # a file OpenSlide cannot even probe
        return None


def open_slide(path: str | os.PathLike[str], *, mpp: float | None = None) -> SlideSource:
    """Open a slide or image for region reads (see the module docstring).

    Args:
        path: a slide file, a TIFF, a PNG / JPEG, or a folder holding one DICOM WSI.
        mpp: µm/px at level 0; overrides what the file states (e.g. ``--mpp``).

    Raises:
        DataError: one line naming the file: not found, truncated or damaged, a TIFF that is no
            2-D image, or a format none of OpenSlide, tifffile and Pillow reads.
    """
    path = Path(path)
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise DataError(path, f"µm/px must be a finite number > 0, got {mpp!r}")
    if not path.exists():
        raise DataError(path, "file not found")
    target = _dicom_file(path) if path.is_dir() else path
    vendor = _openslide_format(target)
    if vendor is not None and vendor != "generic-tiff":
        return SlideSource(OpenSlideReader(target), path, mpp)
    with open(target, "rb") as fh:
        magic = fh.read(4)
    if magic in _TIFF_MAGIC:
        return SlideSource(TiffReader(target), path, mpp)
    try:
        from PIL import Image

        with Image.open(target) as probe:
            probe.size  # noqa: B018 - Pillow identified the format
    except Exception:
        size = os.path.getsize(target)
        what = "an empty file" if size == 0 else "neither a slide OpenSlide opens, nor a TIFF, nor an image Pillow reads"
        raise DataError(path, f"unsupported format: {what}") from None
    return SlideSource(PillowReader(target), path, mpp)


def read_thumbnail(slide: SlideSource, max_side: int = THUMBNAIL_SIDE, *, chunk: int = 1024) -> tuple[np.ndarray, float]:
    """A low-resolution image of the whole slide, its longest side at most ``max_side``.

    Reads the coarsest level still at least ``max_side`` long (or level 0), block-averaged by an
    integer factor chunk by chunk: memory stays near ``chunk^2`` pixels of that level plus the
    result, whatever the slide's size.

    Returns:
        ``(image, downsample)``: float32 ``h x w x C`` in stored units, and level-0 px per
        thumbnail px.
    """
    big = [i for i, (h, w) in enumerate(slide.levels) if max(h, w) >= max_side]
    level = max(big, key=lambda i: slide.downsamples[i]) if big else 0
    height, width = slide.levels[level]
    k = max(1, math.ceil(max(height, width) / max_side))
    out_h, out_w = math.ceil(height / k), math.ceil(width / k)
    out = np.empty((out_h, out_w, slide.channels), np.float32)
    for r, c, means in reduced_chunks(slide, level, k, chunk=chunk):
        out[r : r + means.shape[0], c : c + means.shape[1]] = means
    return out, slide.downsamples[level] * k


def reduced_chunks(slide: SlideSource, level: int, k: int, *, chunk: int = 1024) -> Iterator[tuple[int, int, np.ndarray]]:
    """A level averaged over ``k x k`` blocks, one region of about ``chunk^2`` level pixels at a time.

    Yields ``(row, col, means)``: the means of the reduced image's pixels from ``(row, col)`` on
    (float; the level's own pixels when ``k`` is 1), regions in raster order.
    """
    height, width = slide.levels[level]
    step = max(k, chunk // k * k)  # whole blocks per region
    for y0 in range(0, height, step):
        for x0 in range(0, width, step):
            h, w = min(step, height - y0), min(step, width - x0)
            yield y0 // k, x0 // k, _block_mean(slide.read_region(level, y0, x0, h, w), k)


def _block_mean(block: np.ndarray, k: int) -> np.ndarray:
    """Mean over ``k x k`` blocks; the last, partial row and column of blocks average what they hold."""
    if k == 1:
        return block
    h, w, c = block.shape
    if block.dtype == np.uint8 and h % k == 0 and w % k == 0:  # whole blocks: float32 sums are exact
        sums = block.reshape(h // k, k, w // k, k, c).sum((1, 3), dtype=np.float32)
        return np.true_divide(sums, k * k, dtype=np.float64)
    rows = np.add.reduceat(block, np.arange(0, h, k), axis=0, dtype=np.float32)
    sums = np.add.reduceat(rows, np.arange(0, w, k), axis=1)
    rows = np.diff(np.append(np.arange(0, h, k), h))
    cols = np.diff(np.append(np.arange(0, w, k), w))
    return sums / (rows[:, None, None] * cols[None, :, None])
