"""The overlay of a slide as a downsampled preview (``<stem>_overlay.png``, longest side <= 4096 px).

A preview pixel covers ``factor x factor`` level-0 pixels, ``factor = ceil(longest side / 4096)``.
The image comes from the slide's pyramid (the level closest in size, read chunk by chunk) or,
for an image without one, from strips of its rows; object contours (the inner boundary of each
object in its block's decoding) are painted in as each block completes: a preview pixel is
coloured when any contour pixel falls in it. Memory: the preview itself (at most 4096 x 4096 x
3 bytes) and one chunk of the slide.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seglab.inference.writers import display_rgb

MAX_SIDE = 4096


class Preview:
    """A ``<= max_side`` RGB preview of a level-0 ``shape``, with contours painted in."""

    def __init__(self, shape: tuple[int, int], *, max_side: int = MAX_SIDE, color: tuple[int, int, int] = (255, 255, 0)) -> None:
        self.factor = max(1, math.ceil(max(shape) / max_side))
        self.shape = (-(-shape[0] // self.factor), -(-shape[1] // self.factor))
        self.image = np.zeros((*self.shape, 3), np.uint8)
        self.color = np.array(color, np.uint8)

    def paint_slide(self, slide: Any, *, chunk: int = 1024) -> None:
        """The image from a slide's pyramid, streamed into the preview chunk by chunk.

        The level closest in size to the preview is read (block-averaged by an integer factor
        when it is twice the preview or more, then resampled by nearest neighbour onto the
        preview grid): memory is the preview plus one ``chunk x chunk`` region, whatever the
        slide's size. 16-bit and float slides are stretched to 0-255 between the 0.5-99.5th
        percentiles of every 4th preview pixel.
        """
        from seglab.inference.slide import reduced_chunks

        target = max(self.shape)
        level = min(range(len(slide.levels)), key=lambda i: abs(math.log(max(slide.levels[i]) / target)))
        height, width = slide.levels[level]
        k = max(1, max(height, width) // target)  # level px per reduced px
        rh, rw = -(-height // k), -(-width // k)
        ry = np.minimum((np.arange(self.shape[0]) * rh / self.shape[0]).astype(np.int64), rh - 1)
        rx = np.minimum((np.arange(self.shape[1]) * rw / self.shape[1]).astype(np.int64), rw - 1)
        plain = np.dtype(slide.dtype) == np.uint8
        buf = self.image if plain else np.zeros((*self.shape, slide.channels), slide.dtype)
        for r, c, small in reduced_chunks(slide, level, k, chunk=chunk):
            rows = np.flatnonzero((ry >= r) & (ry < r + small.shape[0]))  # preview pixels showing this region
            cols = np.flatnonzero((rx >= c) & (rx < c + small.shape[1]))
            if not rows.size or not cols.size:
                continue
            pick = small[ry[rows] - r][:, rx[cols] - c]
            where = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            buf[where] = display_rgb(np.rint(pick).astype(np.uint8) if k > 1 else pick) if plain else pick
        if not plain:
            limits = tuple(np.percentile(buf[::4, ::4], (0.5, 99.5)))
            for y in range(0, self.shape[0], 256):
                self.image[y : y + 256] = display_rgb(buf[y : y + 256], limits)

    def paint_source(self, source: Any, scale: float = 1.0, rows: int = 512) -> None:
        """The image from a source read in strips of rows (every ``factor / scale``-th pixel)."""
        height, width = source.shape[:2]
        step = self.factor / scale
        ys = np.minimum((np.arange(self.shape[0]) * step).astype(np.int64), height - 1)
        xs = np.minimum((np.arange(self.shape[1]) * step).astype(np.int64), width - 1)
        for i in range(0, len(ys), max(1, int(rows // max(step, 1)))):
            pick = ys[i : i + max(1, int(rows // max(step, 1)))]
            strip = source.read_rows(int(pick[0]), int(pick[-1]) + 1)
            self.image[i : i + len(pick)] = display_rgb(strip[pick - pick[0]][:, xs])

    def add_contours(self, labels: np.ndarray, y0: int, x0: int, scale: float = 1.0) -> None:
        """Paint the inner contours of a label crop whose top-left source pixel is ``(y0, x0)``."""
        from skimage.segmentation import find_boundaries

        rows, cols = np.flatnonzero(labels.any(1)), np.flatnonzero(labels.any(0))
        if not rows.size:
            return
        # only around the objects (one pixel more: a boundary pixel's neighbours decide it)
        ya, yb = max(int(rows[0]) - 1, 0), int(rows[-1]) + 2
        xa, xb = max(int(cols[0]) - 1, 0), int(cols[-1]) + 2
        labels, y0, x0 = labels[ya:yb, xa:xb], y0 + ya, x0 + xa
        rr, cc = np.nonzero(find_boundaries(labels, mode="inner") & (labels > 0))
        if rr.size:
            py = np.minimum(((rr + y0 + 0.5) * scale / self.factor).astype(np.int64), self.shape[0] - 1)
            px = np.minimum(((cc + x0 + 0.5) * scale / self.factor).astype(np.int64), self.shape[1] - 1)
            self.image[py, px] = self.color

    def save(self, path: Any) -> None:
        """Write the preview as a PNG, atomically (fast deflate: a 4096-px preview is 50 MB raw)."""
        from PIL import Image

        from seglab.fileio import atomic_path

        with atomic_path(path) as tmp:
            Image.fromarray(self.image).save(tmp, format="PNG", compress_level=1)
