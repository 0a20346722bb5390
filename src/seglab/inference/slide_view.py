"""A slide seen at the model's resolution: one pyramid level, resampled region by region.

:func:`model_view` picks the coarsest pyramid level that is still at least as fine as the
model's µm/px, and returns a source at exactly the model's µm/px. The source answers the
interface the predictor reads (:class:`~seglab.inference.source.ArraySource`: ``shape``,
``dtype``, ``path``, ``read_rows``, ``read_all``, ``close``) and ``read_region(y0, y1, x0, x1)``
for 2-D blocks.

Resampling is separable, antialiased linear interpolation, the filter Pillow's ``BILINEAR``
uses: an output pixel ``i`` is centred at ``(i + 0.5) * f`` in the level (``f`` = level px per
output px), a triangle of half-width ``max(f, 1)`` weighs the level pixels under it, and the
weights are renormalised where the triangle leaves the image. Each output pixel depends on its
own index only, so any two regions agree on the pixels they share (tiles stitch without seams),
and a region reads only the level pixels under it plus the filter's reach.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seglab.inference.slide import SlideSource
from seglab.inference.source import ArraySource


def _taps(start: int, stop: int, factor: float, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Level pixels and weights of output pixels ``start..stop-1``.

    Returns:
        ``(index, weight, first)``: ``index`` (n x T) level pixels relative to ``first``,
        ``weight`` (n x T) summing to 1 per row.
    """
    support = max(factor, 1.0)
    centre = (np.arange(start, stop) + 0.5) * factor
    lo = np.maximum(np.floor(centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum(np.ceil(centre + support - 0.5).astype(np.int64), size)  # exclusive
    taps = int((hi - lo).max())
    index = lo[:, None] + np.arange(taps)[None, :]
    weight = np.clip(1.0 - np.abs((index + 0.5 - centre[:, None]) / support), 0.0, None)
    weight[index >= hi[:, None]] = 0.0
    weight /= weight.sum(1, keepdims=True)
    first = int(lo.min())
    return np.minimum(index, size - 1) - first, weight.astype(np.float32), first


def resample_region(read: Any, level_shape: tuple[int, int], factor: float,
                    y0: int, y1: int, x0: int, x1: int, dtype: np.dtype) -> np.ndarray:
    """Output pixels ``[y0:y1, x0:x1]`` of a level resampled by ``factor`` (level px per output px).

    Args:
        read: ``read(y0, x0, h, w)`` of the level (inside its bounds).
        level_shape: the level's ``(H, W)``.
        dtype: of the result; integers are rounded and clipped to their range.
    """
    ry, wy, fy = _taps(y0, y1, factor, level_shape[0])
    rx, wx, fx = _taps(x0, x1, factor, level_shape[1])
    block = read(fy, fx, int(ry.max()) + 1, int(rx.max()) + 1).astype(np.float32)
    rows = sum(wy[:, t, None, None] * block[ry[:, t]] for t in range(ry.shape[1]))  # one tap at a time:
    out = sum(wx[None, :, t, None] * rows[:, rx[:, t]] for t in range(rx.shape[1]))  # memory ~ the block
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)


class SlideView(ArraySource):
    """One pyramid level of a slide, resampled by ``factor`` when it is not 1 (see module docstring).

    Attributes:
        slide: the :class:`SlideSource` (closed with the view).
        level: the pyramid level read.
        factor: level pixels per view pixel (1.0: the level as it is).
        scale: level-0 pixels per view pixel.
    """

    def __init__(self, slide: SlideSource, level: int, factor: float = 1.0) -> None:
        self.slide, self.level, self.factor, self.path = slide, level, float(factor), slide.path
        height, width = slide.levels[level]
        if self.factor == 1.0:
            self._shape = (height, width, slide.channels)
        else:
            self._shape = (max(1, round(height / self.factor)), max(1, round(width / self.factor)), slide.channels)
        self.scale = slide.downsamples[level] * self.factor

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self.slide.dtype

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """View pixels ``[y0:y1, x0:x1]`` (``(y1 - y0) x (x1 - x0) x C``, stored dtype)."""
        height, width, _ = self._shape
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f"region [{y0}:{y1}, {x0}:{x1}] outside the view of shape {height} x {width}")
        if self.factor == 1.0:
            return self.slide.read_region(self.level, y0, x0, y1 - y0, x1 - x0)
        read = lambda ya, xa, h, w: self.slide.read_region(self.level, ya, xa, h, w)  # noqa: E731
        return resample_region(read, self.slide.levels[self.level], self.factor, y0, y1, x0, x1, self.dtype)

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        return self.read_region(y0, y1, 0, self._shape[1])

    def read_all(self) -> np.ndarray:
        return self.read_rows(0, self._shape[0])

    def close(self) -> None:
        self.slide.close()

    def __enter__(self) -> SlideView:
        return self


def model_view(slide: SlideSource, model_mpp: float | None, *, tolerance: float = 0.1) -> tuple[SlideView, float, str | None]:
    """The slide at the model's µm/px: the level to read, resampled where needed.

    The level chosen is the coarsest whose µm/px is at most ``model_mpp * (1 + tolerance)``
    (never coarser than the model: detail lost cannot be restored); a level within ``tolerance``
    of the model is used as it is, any other is resampled to ``model_mpp`` exactly.

    Args:
        slide: an open slide (closed when the returned view is closed).
        model_mpp: the checkpoint's µm/px (``meta.get("mpp")``), or ``None``.
        tolerance: relative mismatch accepted without resampling.

    Returns:
        ``(view, scale, message)``: ``scale`` is level-0 px per view px (multiply view
        coordinates by it for level-0 coordinates); ``message`` a one-line warning when the
        resolution cannot be matched (unknown µm/px on either side: level 0 as it is) or the
        slide is coarser than the model (level 0 upsampled), else ``None``.
    """
    name = slide.path.name
    if slide.mpp is None or model_mpp is None:
        whose = " and ".join(w for w, v in (("the slide's (give --mpp)", slide.mpp),
                                            ("the model's (its checkpoint records none)", model_mpp)) if v is None)
        message = (f"{name}: µm/px unknown: {whose}; predicting on level 0 as it is, which is right only "
                   f"when the slide was scanned at the model's resolution")
        return SlideView(slide, 0), 1.0, message
    fine_enough = [i for i, d in enumerate(slide.downsamples) if slide.mpp * d <= model_mpp * (1 + tolerance)]
    level = max(fine_enough, key=lambda i: slide.downsamples[i]) if fine_enough else 0
    level_mpp = slide.mpp * slide.downsamples[level]
    factor = model_mpp / level_mpp
    message = None
    if abs(factor - 1.0) <= tolerance:
        factor = 1.0
    elif factor < 1.0:
        message = (f"{name}: slide is coarser ({slide.mpp:.3g} µm/px) than the model ({model_mpp:.3g} µm/px); "
                   f"level 0 is upsampled {1 / factor:.2f}x, which cannot restore the detail the model expects")
    view = SlideView(slide, level, factor)
    return view, view.scale, message

