"""Where the tissue is on a slide: a low-resolution mask to skip tiles of bare glass.

``detect_tissue(slide, "auto")`` works on a thumbnail of the slide (longest side about
:data:`~seglab.inference.slide.THUMBNAIL_SIDE` px, read from a pyramid level chunk by chunk, never
a whole full-resolution level):

* **brightfield** (3 or 4 channels and a bright border, i.e. glass): Otsu's threshold on the HSV
  saturation ``(max - min) / max``, the standard approach (e.g. CLAM, TIAToolbox): stained tissue
  is coloured, glass is grey-white. The threshold is kept within [0.05, 0.2] so that the faint
  noise of an empty slide is not split into "tissue" and a slide filled with tissue keeps its
  pale parts.
* **anything else** (gray, fluorescence, several channels, a dark border): Otsu's threshold on
  the intensity (the brightest channel, each scaled to its 99.5th percentile); tissue is the side
  the image border is *not* on (a slide's edges are background). When the two sides do not
  separate (their means less than :data:`MIN_SEPARATION` pooled standard deviations apart) the
  image has no background to tell apart, and everything is tissue: nothing is skipped.

Clean-up, in mask pixels: holes smaller than 1 % of the thumbnail filled, objects smaller than
0.01 % of it (at least 16 px) removed, then a dilation by :data:`DILATE` px so that nuclei at the
tissue's edge keep their tiles. ``"none"`` gives an all-tissue mask; a path reads a mask image
(nonzero = tissue) whose aspect ratio must match the slide's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seglab.errors import DataError
from seglab.inference.slide import THUMBNAIL_SIDE, SlideSource, fill_value, read_thumbnail

SATURATION_BOUNDS = (0.05, 0.2)
MIN_SEPARATION = 5.0  # a Gaussian split in two: 2.7, uniform noise: 3.5; tissue vs glass: far more
DILATE = 2


class NoTissueError(DataError):
    """The slide has no tissue to predict on."""


@dataclass
class TissueMask:
    """A low-resolution tissue mask of a slide.

    Attributes:
        mask: ``h x w`` bool, True = tissue.
        shape0: the slide's level 0 ``(H, W)``.
        method: how it was made (``"otsu saturation 0.12"``, ``"none"``, the mask file, ...).
    """

    mask: np.ndarray
    shape0: tuple[int, int]
    method: str = ""
    _integral: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, bool)
        self._integral = np.pad(self.mask.cumsum(0, dtype=np.int64).cumsum(1), ((1, 0), (1, 0)))

    @property
    def downsample(self) -> float:
        """Level-0 px per mask px (along x; y agrees within rounding)."""
        return self.shape0[1] / self.mask.shape[1]

    @property
    def fraction(self) -> float:
        """Share of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def area_mm2(self, mpp: float | None) -> float | None:
        """Tissue area in mm² at ``mpp`` µm per level-0 px; ``None`` when ``mpp`` is unknown."""
        if mpp is None:
            return None
        return self.fraction * self.shape0[0] * self.shape0[1] * mpp * mpp / 1e6

    def covers(self, y0: float, y1: float, x0: float, x1: float) -> bool:
        """Whether the level-0 box ``[y0:y1, x0:x1]`` holds any tissue (tiles that do not are skipped)."""
        h, w = self.mask.shape
        sy, sx = self.shape0[0] / h, self.shape0[1] / w
        ya, yb = max(0, math.floor(y0 / sy)), min(h, math.ceil(y1 / sy))
        xa, xb = max(0, math.floor(x0 / sx)), min(w, math.ceil(x1 / sx))
        if ya >= yb or xa >= xb:
            return False
        s = self._integral
        return bool(s[yb, xb] - s[ya, xb] - s[yb, xa] + s[ya, xa] > 0)

    def save_png(self, path: str | os.PathLike[str]) -> None:
        """Write the mask as an 8-bit PNG (255 = tissue), atomically."""
        from PIL import Image

        from seglab.fileio import atomic_path

        with atomic_path(path) as tmp:
            Image.fromarray(self.mask.astype(np.uint8) * 255).save(tmp, format="PNG")

    def check_not_empty(self, path: str | os.PathLike[str]) -> TissueMask:
        """``self``, or :class:`NoTissueError` naming ``path`` when no pixel is tissue."""
        if self.empty:
            raise NoTissueError(path, f"no tissue found ({self.method}); use --tissue none to predict on the whole slide")
        return self


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the histogram split maximising the between-class variance."""
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = counts.sum() - w0
    m0 = np.cumsum(counts * centres)[:-1] / np.maximum(w0, 1)
    m1 = (np.sum(counts * centres) - np.cumsum(counts * centres)[:-1]) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:-1][np.argmax(between)])


def _border(image: np.ndarray) -> np.ndarray:
    width = max(1, min(image.shape[:2]) // 50)
    return np.concatenate([image[:width].reshape(-1), image[-width:].reshape(-1),
                           image[:, :width].reshape(-1), image[:, -width:].reshape(-1)])


def _raw_tissue(thumb: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, str]:
    """Tissue pixels of a thumbnail before clean-up, and how they were found."""
    white = float(fill_value(3, dtype))
    if thumb.shape[2] in (3, 4):
        rgb = thumb[..., :3] / white
        value = rgb.max(2)
        if np.median(_border(value)) > 0.5:  # a bright border: brightfield glass
            saturation = np.where(value > 0, (value - rgb.min(2)) / np.maximum(value, 1e-6), 0.0)
            t = float(np.clip(otsu_threshold(saturation), *SATURATION_BOUNDS))
            return saturation > t, f"otsu on saturation, threshold {t:.3f}"
    scaled = thumb / np.maximum(np.percentile(thumb.reshape(-1, thumb.shape[2]), 99.5, axis=0), 1e-12)
    intensity = scaled.max(2)
    t = otsu_threshold(intensity)
    high = intensity > t
    if high.all() or not high.any():
        return np.ones_like(high), "otsu on intensity: uniform image, all tissue"
    lo_vals, hi_vals = intensity[~high], intensity[high]
    pooled = math.sqrt((lo_vals.var() * lo_vals.size + hi_vals.var() * hi_vals.size) / intensity.size)
    if hi_vals.mean() - lo_vals.mean() < MIN_SEPARATION * max(pooled, 1e-12):
        return np.ones_like(high), "otsu on intensity: no background to tell apart, all tissue"
    background_high = np.median(_border(intensity)) > t
    return (~high if background_high else high), f"otsu on intensity, threshold {t:.3g}"


def clean_mask(raw: np.ndarray, dilate: int = DILATE) -> np.ndarray:
    """Fill small holes, drop small specks, dilate by ``dilate`` px (see the module docstring)."""
    from scipy import ndimage

    size = raw.size
    holes, _ = ndimage.label(~raw)
    hole_area = np.bincount(holes.ravel())
    edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = hole_area < max(1, size // 100)
    small[edge] = False
    small[0] = False
    mask = raw | small[holes]
    objects, _ = ndimage.label(mask)
    keep = np.bincount(objects.ravel()) >= max(16, size // 10000)
    keep[0] = False
    mask = keep[objects]
    if dilate and mask.any():
        yy, xx = np.mgrid[-dilate:dilate + 1, -dilate:dilate + 1]
        mask = ndimage.binary_dilation(mask, structure=yy * yy + xx * xx <= dilate * dilate)
    return mask


def read_mask(path: str | os.PathLike[str], shape0: tuple[int, int]) -> TissueMask:
    """A mask image (nonzero = tissue) for a slide of level-0 ``shape0``.

    Raises:
        DataError: unreadable, or its aspect ratio is not the slide's (beyond one pixel of rounding).
    """
    from seglab.data.io import read_image

    path = Path(path)
    mask = read_image(path).max(2) > 0
    h, w = mask.shape
    expected_h = shape0[0] * w / shape0[1]
    if abs(h - expected_h) > 1.0 + 1e-9 or h > shape0[0] or w > shape0[1]:
        raise DataError(path, f"tissue mask is {w} x {h} px, which is not a downscaled copy of the "
                              f"{shape0[1]} x {shape0[0]} px slide (expected {w} x {expected_h:.0f})")
    return TissueMask(mask, shape0, f"mask {path.name}")


def detect_tissue(slide: SlideSource, spec: str | os.PathLike[str] = "auto", *, raise_empty: bool = True) -> TissueMask:
    """The tissue mask of a slide: ``"auto"`` (detected), ``"none"`` (all tissue) or a mask file.

    Args:
        slide: an open :class:`~seglab.inference.slide.SlideSource`.
        spec: ``"auto"``, ``"none"`` or the path of a mask image.
        raise_empty: raise :class:`NoTissueError` when no tissue is found (else return the empty
            mask; ``mask.empty`` tells).

    Raises:
        NoTissueError: no tissue (``raise_empty``), naming the slide.
        DataError: a mask file that cannot be read or does not fit the slide.
    """
    shape0 = slide.levels[0]
    if str(spec) == "none":
        k = max(1, math.ceil(max(shape0) / THUMBNAIL_SIDE))
        return TissueMask(np.ones((math.ceil(shape0[0] / k), math.ceil(shape0[1] / k)), bool), shape0, "none")
    if str(spec) == "auto":
        thumb, _ = read_thumbnail(slide)
        raw, method = _raw_tissue(thumb, slide.dtype)
        result = TissueMask(clean_mask(raw), shape0, method)
    else:
        result = read_mask(spec, shape0)
    return result.check_not_empty(slide.path) if raise_empty else result
