"""Dataset fingerprint: one pass over a folder data set, the facts a recipe is planned from.

As nnU-Net plans from a fingerprint of its data, seglab reads every image and label of a folder
data set once and keeps what the automatic recipe (:mod:`seglab.engine.autoconfig`) needs:

- image sizes, channels and dtype (all images must agree on channels);
- per-channel intensity percentiles in the stored units (from a bounded sample of pixels per
  image), the mean / std after clipping to the data set's or to each image's percentiles (the
  two normalisations the recipe chooses from), and how much the images' ranges differ;
- whether objects are brighter than the background (fluorescence) or darker (brightfield);
- objects: count per image, equivalent diameter ``sqrt(4 area / pi)`` (median, 5th and 95th
  percentile, in px and in µm when the resolution is known), the share touching another object;
- class frequencies (semantic task) and the largest class index;
- µm/px: the median over the images whose metadata states it (:mod:`seglab.data.resolution`:
  TIFF resolution tags, OME, Aperio, PNG/JPEG density), how many state it and how far they differ.

The same pass checks what would otherwise fail mid-training: label/image size, channel count,
negative or non-integer labels. Every problem is a :class:`~seglab.errors.DataError` naming the
file. The result is cached as ``DIR/.seglab/fingerprint-<task>.json``, keyed by the names, sizes
and modification times of the files, so a second run on the same folder reads nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import DataError

FINGERPRINT_VERSION = 4
PERCENTILES = (0.5, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.5)
CLIP = (0.5, 99.5)  # percentiles the proposed normalisation clips to
PIXELS_PER_IMAGE = 65536  # intensity sample per image (bounds memory on large images)


@dataclass
class Fingerprint:
    """What one pass over a data set found; see the module docstring."""

    task: str
    n_images: int
    channels: int
    dtype: str
    heights: list[int]
    widths: list[int]
    percentiles: dict[str, list[float]]  # "p0.5" -> one value per channel, stored units
    mean: list[float]  # per channel, stored units
    std: list[float]
    clip_low: list[float]  # per channel, the CLIP[0] percentile
    clip_high: list[float]  # per channel, the CLIP[1] percentile
    clipped_mean: list[float]  # mean of (x - low) / (high - low) clipped to [0, 1], per channel
    clipped_std: list[float]
    image_mean: list[float]  # the same after scaling each image by its own 1-99.8th percentiles
    image_std: list[float]
    range_spread: list[float]  # per channel: largest / smallest per-image percentile range
    objects_brighter: bool | None  # objects brighter than background (fluorescence-like)
    objects_per_image: list[int]
    diameters: dict[str, float]  # "median", "p05", "p95" equivalent diameter in px (0 when none)
    areas: dict[str, float]  # "median", "p05", "p95" object area in px
    touching_share: float  # share of objects touching another object
    foreground_share: float  # share of labelled (non-background, non-ignore) pixels
    class_pixels: dict[str, int] = field(default_factory=dict)  # class index -> pixels (semantic)
    max_class: int = 0  # largest class index other than 255 (semantic)
    mpp: float | None = None  # µm per pixel: median over the images stating it, None when none does
    mpp_images: int = 0  # images whose metadata states their µm/px
    mpp_spread: float = 1.0  # largest / smallest stated µm/px (1.0: they agree)

    @property
    def mpp_disagree(self) -> bool:
        """The images state resolutions more than 10 % apart."""
        return self.mpp_spread > 1.1

    @property
    def median_size(self) -> tuple[int, int]:
        return int(np.median(self.heights)), int(np.median(self.widths))

    def to_dict(self) -> dict[str, Any]:
        return {"version": FINGERPRINT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        data = {k: v for k, v in data.items() if k != "version"}
        return cls(**data)

    def summary(self) -> list[str]:
        """Human-readable lines (``seglab data fingerprint`` and ``train`` print them)."""
        hs, ws = self.heights, self.widths
        ch = ", ".join(
            f"c{i} p0.5 {self.clip_low[i]:.4g} / p50 {self.percentiles['p50.0'][i]:.4g} / p99.5 {self.clip_high[i]:.4g}"
            for i in range(self.channels)
        )
        spread = ", ".join(f"{v:.1f}x" for v in self.range_spread)
        look = {True: "objects brighter than background (fluorescence-like)",
                False: "objects darker than background (brightfield-like)", None: "no objects"}[self.objects_brighter]
        d = self.diameters
        um = f" ({d['median'] * self.mpp:.1f} µm)" if self.mpp else ""
        if self.mpp is None:
            res = "µm/px unknown (no image states it)"
        else:
            res = f"{self.mpp:.4g} µm/px (median of the {self.mpp_images} of {self.n_images} images stating it"
            res += f"; they differ up to {self.mpp_spread:.2f}x)" if self.mpp_disagree else ")"
        lines = [
            f"images: {self.n_images}, {self.channels} channel(s), {self.dtype}, "
            f"H {min(hs)}-{max(hs)} x W {min(ws)}-{max(ws)} px, {res}",
            f"intensity: {ch}; per-image ranges differ up to {spread}; {look}",
            f"objects: {int(np.median(self.objects_per_image)) if self.objects_per_image else 0} per image "
            f"(median), {sum(self.objects_per_image)} in all; diameter median {d['median']:.1f} px{um}, "
            f"p05 {d['p05']:.1f}, p95 {d['p95']:.1f}; touching {100 * self.touching_share:.0f}%; "
            f"foreground {100 * self.foreground_share:.1f}% of pixels",
        ]
        if self.task == "semantic":
            total = max(1, sum(self.class_pixels.values()))
            lines.append("classes: " + ", ".join(f"{c}: {100 * n / total:.2f}%" for c, n in sorted(self.class_pixels.items(), key=lambda kv: int(kv[0]))))
        return lines


# -- one image ----------------------------------------------------------------------------------
def _sample_pixels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to :data:`PIXELS_PER_IMAGE` pixels of an ``H x W x C`` image, ``n x C`` float64."""
    flat = image.reshape(-1, image.shape[-1])
    if flat.shape[0] > PIXELS_PER_IMAGE:
        flat = flat[rng.choice(flat.shape[0], PIXELS_PER_IMAGE, replace=False)]
    return flat.astype(np.float64)


def _touching_ids(objects: np.ndarray) -> np.ndarray:
    """Ids of objects 4-adjacent to another (nonzero, different) id."""
    found = []
    for a, b in ((objects[1:, :], objects[:-1, :]), (objects[:, 1:], objects[:, :-1])):
        pair = (a != b) & (a > 0) & (b > 0)
        found += [a[pair], b[pair]]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def _objects(label: np.ndarray, task: str) -> np.ndarray:
    """Instance ids (instance task) or connected components of non-background classes (semantic)."""
    if task == "instance":
        return label
    from scipy import ndimage

    return ndimage.label((label > 0) & (label != 255))[0]


@dataclass
class _Accumulator:
    task: str
    pixels: list[np.ndarray] = field(default_factory=list)
    image_scaled: list[np.ndarray] = field(default_factory=list)
    spans: list[np.ndarray] = field(default_factory=list)
    fg_means: list[np.ndarray] = field(default_factory=list)
    bg_means: list[np.ndarray] = field(default_factory=list)
    areas: list[np.ndarray] = field(default_factory=list)
    per_image: list[int] = field(default_factory=list)
    touching: int = 0
    fg_pixels: int = 0
    all_pixels: int = 0
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))

    def add(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> None:
        from seglab.data.normalize import image_range

        sample = _sample_pixels(image, rng)
        self.pixels.append(sample)
        low, high = (np.asarray(v) for v in image_range(sample))
        self.spans.append(high - low)
        self.image_scaled.append(np.clip((sample - low) / (high - low), 0.0, 1.0))
        fg = (label > 0) & (label != 255) if self.task == "semantic" else label > 0
        if fg.any() and not fg.all():
            self.fg_means.append(image[fg].mean(0, dtype=np.float64))
            self.bg_means.append(image[~fg].mean(0, dtype=np.float64))
        objects = _objects(label, self.task)
        counts = np.bincount(objects.ravel())
        areas = counts[1:][counts[1:] > 0]
        self.areas.append(areas)
        self.per_image.append(int(areas.size))
        self.touching += int(_touching_ids(objects).size)
        self.fg_pixels += int(fg.sum())
        self.all_pixels += label.size - (int((label == 255).sum()) if self.task == "semantic" else 0)
        if self.task == "semantic":
            self.class_pixels += np.bincount(label.ravel(), minlength=256)[:256]


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"median": 0.0, "p05": 0.0, "p95": 0.0}
    p05, med, p95 = np.percentile(values, [5, 50, 95])
    return {"median": float(med), "p05": float(p05), "p95": float(p95)}


# -- the data set -------------------------------------------------------------------------------
def _signature(samples: Sequence[Any]) -> list[list[Any]]:
    sig = []
    for s in samples:
        for p in (s.image, s.label):
            st = os.stat(p)
            sig.append([str(Path(p).name), st.st_size, st.st_mtime_ns])
    return sig


def _cache_path(root: Path, task: str) -> Path:
    return root / ".seglab" / f"fingerprint-{task}.json"


def compute_fingerprint(samples: Sequence[Any], *, task: str = "instance", seed: int = 0) -> Fingerprint:
    """One pass over ``samples`` (:class:`seglab.data.Sample` with labels); see the module docstring.

    Raises:
        DataError: an unreadable file, a label whose size differs from its image, images with
            different channel counts, or an instance/semantic label that is not a valid map.
    """
    from seglab.data.dataset import read_sample
    from seglab.data.resolution import image_mpp

    if not samples:
        raise DataError("<data>", "no labelled images")
    rng = np.random.default_rng(seed)
    acc = _Accumulator(task)
    heights, widths, channels, dtype = [], [], None, None
    for sample in samples:
        image, label = read_sample(sample)
        if channels is None:
            channels, dtype = image.shape[-1], str(image.dtype)
        elif image.shape[-1] != channels:
            raise DataError(sample.image, f"has {image.shape[-1]} channels, {samples[0].image} has {channels}")
        if task == "semantic" and label.max(initial=0) > 255:
            raise DataError(sample.label, f"class index {int(label.max())} above 255")
        heights.append(int(image.shape[0]))
        widths.append(int(image.shape[1]))
        acc.add(image, label, rng)
    pix = np.concatenate(acc.pixels)
    table = np.percentile(pix, PERCENTILES, axis=0)  # len(PERCENTILES) x C
    low, high = table[PERCENTILES.index(CLIP[0])], table[PERCENTILES.index(CLIP[1])]
    high = np.where(high > low, high, low + 1.0)
    clipped = np.clip((pix - low) / (high - low), 0.0, 1.0)
    areas = np.concatenate(acc.areas) if acc.areas else np.zeros(0)
    per_image = np.concatenate(acc.image_scaled)
    spans = np.array(acc.spans)
    brighter = None
    if acc.fg_means:
        brighter = bool(np.mean(np.sum(np.array(acc.fg_means) - np.array(acc.bg_means), axis=1)) > 0)
    n_objects = int(areas.size)
    classes = {str(c): int(n) for c, n in enumerate(acc.class_pixels) if n} if task == "semantic" else {}
    mpps = [m for m in (image_mpp(s.image) for s in samples) if m is not None]
    max_class = max((int(c) for c in classes if int(c) != 255), default=0)
    return Fingerprint(
        task=task,
        n_images=len(samples),
        channels=int(channels),
        dtype=str(dtype),
        heights=heights,
        widths=widths,
        percentiles={f"p{p}": [float(v) for v in row] for p, row in zip(PERCENTILES, table, strict=True)},
        mean=[float(v) for v in pix.mean(0)],
        std=[float(v) for v in pix.std(0)],
        clip_low=[float(v) for v in low],
        clip_high=[float(v) for v in high],
        clipped_mean=[float(v) for v in clipped.mean(0)],
        clipped_std=[float(v) for v in np.maximum(clipped.std(0), 1e-3)],
        image_mean=[float(v) for v in per_image.mean(0)],
        image_std=[float(v) for v in np.maximum(per_image.std(0), 1e-3)],
        range_spread=[float(v) for v in spans.max(0) / np.maximum(spans.min(0), 1e-12)],
        objects_brighter=brighter,
        objects_per_image=acc.per_image,
        diameters=_stats(np.sqrt(4.0 * areas / math.pi)),
        areas=_stats(areas.astype(np.float64)),
        touching_share=acc.touching / n_objects if n_objects else 0.0,
        foreground_share=acc.fg_pixels / max(1, acc.all_pixels),
        class_pixels=classes,
        max_class=max_class,
        mpp=float(np.median(mpps)) if mpps else None,
        mpp_images=len(mpps),
        mpp_spread=max(mpps) / min(mpps) if mpps else 1.0,
    )


def fingerprint(samples: Sequence[Any], *, task: str = "instance", root: str | os.PathLike[str] | None = None) -> Fingerprint:
    """:func:`compute_fingerprint`, cached in ``root/.seglab/`` when ``root`` is given.

    The cache is used only when every file's name, size and modification time match; a folder
    that cannot be written to is simply not cached.
    """
    signature = _signature(samples)
    cache = None if root is None else _cache_path(Path(root), task)
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("signature") == signature and data.get("fingerprint", {}).get("version") == FINGERPRINT_VERSION:
                return Fingerprint.from_dict(data["fingerprint"])
        except (OSError, ValueError, TypeError):
            pass
    result = compute_fingerprint(samples, task=task)
    if cache is not None:
        from seglab.fileio import write_json_atomic

        with contextlib.suppress(OSError):  # a read-only data folder is simply not cached
            write_json_atomic(cache, {"signature": signature, "fingerprint": result.to_dict()}, indent=None)
    return result


def fingerprint_folder(root: str | os.PathLike[str], *, task: str = "instance") -> Fingerprint:
    """Fingerprint of a folder data set (``root/images`` + ``root/labels``), cached."""
    from seglab.data.dataset import find_samples

    return fingerprint(find_samples(Path(root), require_labels=True), task=task, root=root)
