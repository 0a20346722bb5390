"""Intensity scaling: stored pixel values -> [0, 1], by the data set's or each image's percentiles.

Three modes, recorded in a checkpoint's ``preprocessing`` so prediction repeats training exactly:

``dataset``  clip each channel to the training data's 0.5-99.5th percentiles (from the
             fingerprint) and scale to [0, 1]: stain and brightness differences between images
             are kept (brightfield H&E, where they carry meaning).
``image``    clip each channel to the image's own 1-99.8th percentiles (StarDist's and Cellpose's
             default): fluorescence exposure and gain vary from image to image and between
             training and use. Large images are sampled on a strided grid, never read whole.
``dtype``    divide by the dtype's maximum (255, 65535); floats as they are. Checkpoints written
             before intensity scaling existed use it.

A z-score with the fingerprint's mean and std (of the scaled values) follows in the model's
preprocessing; augmentation happens in between, on the [0, 1] values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("dataset", "image", "dtype")
IMAGE_PERCENTILES = (1.0, 99.8)
SAMPLE_PIXELS = 1 << 18  # pixels sampled per image for its percentiles


def sample_grid(shape: tuple[int, ...], pixels: int = SAMPLE_PIXELS) -> int:
    """Stride of a regular grid holding about ``pixels`` points of an ``H x W`` image."""
    return max(1, int(np.sqrt(shape[0] * shape[1] / pixels)))


def image_range(
    sample: np.ndarray, percentiles: tuple[float, float] = IMAGE_PERCENTILES
) -> tuple[list[float], list[float]]:
    """Per-channel ``(low, high)`` percentiles of an ``H x W x C`` sample (high > low)."""
    flat = np.asarray(sample, dtype=np.float64).reshape(-1, sample.shape[-1])
    low, high = np.percentile(flat, percentiles, axis=0)
    high = np.where(high > low, high, low + 1.0)
    return [float(v) for v in low], [float(v) for v in high]


def read_sampled(read_rows: Callable[[int, int], np.ndarray], height: int, width: int) -> np.ndarray:
    """A strided sample of a lazily read image (``read_rows(y0, y1) -> rows x W x C``)."""
    step = sample_grid((height, width))
    rows = [read_rows(y, y + 1)[:, ::step] for y in range(0, height, step)]
    return np.concatenate(rows, axis=0)


@dataclass(frozen=True)
class IntensityScaling:
    """How an image's stored values become [0, 1] (module docstring)."""

    mode: str = "dtype"
    low: tuple[float, ...] | None = None  # dataset mode
    high: tuple[float, ...] | None = None
    percentiles: tuple[float, float] = IMAGE_PERCENTILES  # image mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            from seglab.errors import unknown_choice

            raise unknown_choice("intensity scaling", self.mode, MODES)

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> IntensityScaling:
        """From a checkpoint's ``preprocessing`` block (no ``intensity`` key: by dtype)."""
        spec = pre.get("intensity") or {"mode": "dtype"}
        return cls(
            mode=spec["mode"],
            low=tuple(spec["low"]) if spec.get("low") is not None else None,
            high=tuple(spec["high"]) if spec.get("high") is not None else None,
            percentiles=tuple(spec.get("percentiles", IMAGE_PERCENTILES)),
        )

    def to_preprocessing(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"mode": self.mode}
        if self.mode == "dataset":
            spec.update(low=list(self.low or ()), high=list(self.high or ()))
        if self.mode == "image":
            spec["percentiles"] = list(self.percentiles)
        return spec

    def range_of(self, sample: np.ndarray) -> tuple[list[float] | None, list[float] | None]:
        """``(low, high)`` for an image, given a sample of its pixels (image mode) or not."""
        if self.mode == "dataset":
            return list(self.low), list(self.high)  # type: ignore[arg-type]
        if self.mode == "image":
            return image_range(sample, self.percentiles)
        return None, None

    def range_of_array(self, image: np.ndarray) -> tuple[list[float] | None, list[float] | None]:
        """:meth:`range_of` an in-memory (or memory-mapped) ``H x W x C`` image."""
        if self.mode != "image":
            return self.range_of(image)
        step = sample_grid(image.shape)
        return self.range_of(np.asarray(image[::step, ::step]))

    def __call__(self, image: np.ndarray, value_range: tuple[Any, Any] | None = None):
        """``H x W x C`` -> float32 ``C x H x W`` tensor in [0, 1].

        ``value_range`` is the image's range from :meth:`range_of` (image mode: needed when
        ``image`` is a tile or band of a larger image, whose own percentiles would differ).
        """
        from seglab.data.io import scale_intensity

        low, high = value_range if value_range is not None else self.range_of_array(image)
        return scale_intensity(image, low, high)
