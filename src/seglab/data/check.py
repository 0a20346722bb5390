"""``seglab data check``: read every file of a folder data set once, report statistics and
every problem found (missing label, label without image, size mismatch, unreadable file, empty
label, a channel count other than the other images'), one line each naming the file.

Memory stays bounded by a band of rows, not by the image: TIFFs are opened through tifffile's
zarr store, so shapes come from the headers (a size mismatch is found without decoding) and
pixels are decoded a band of rows at a time (only the tiles or strips under those rows); label
statistics are accumulated band by band in the stored dtype, never as a whole int64 map.
PNG / JPEG files are decoded whole in their stored dtype.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.io import IMAGE_SUFFIXES, LABEL_SUFFIXES, _read_raw
from seglab.errors import DataError, unknown_choice

TASKS = ("instance", "semantic")
_LABEL_DIRS = ("labels", "annotations")
_TIFF = (".tif", ".tiff")
_BAND_PIXELS = 1 << 22  # pixels decoded at a time: 32 MiB as int64


@dataclass
class DataReport:
    """What :func:`check_dataset` found. ``problems`` holds one line per problem."""

    root: Path
    task: str
    n_images: int = 0
    n_labels: int = 0
    n_pairs: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    channels: Counter = field(default_factory=Counter)
    image_channels: list[tuple[Path, int]] = field(default_factory=list)  # per readable image
    dtypes: Counter = field(default_factory=Counter)
    instances_per_image: list[int] = field(default_factory=list)
    object_areas_sum: int = 0
    class_pixels: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
                found.setdefault(p.stem, []).append(p)
    return found


def _problem(report: DataReport, path: Path | str, text: str) -> None:
    report.problems.append(f"{path}: {text}")


@contextlib.contextmanager
def _open_stored(path: Path) -> Iterator[Any]:
    """The file's stored array, lazily for TIFF (a zarr array decoding only the rows sliced;
    shape and dtype come from the header), else decoded whole in its stored dtype."""
    if path.suffix.lower() not in _TIFF:
        yield _read_raw(path)
        return
    if not path.is_file():
        raise DataError(path, "file not found")
    import tifffile
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True)
    except Exception as exc:
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
    try:
        try:
            arr = zarr.open(store, mode="r")
            if not hasattr(arr, "shape"):  # a pyramid group: full resolution, as tifffile.imread reads
                arr = arr[sorted(arr.array_keys())[0]]
        except Exception as exc:
            raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
        yield arr
    finally:
        store.close()


def _bands(path: Path, arr: Any, row_axis: int, width: int) -> Iterator[np.ndarray]:
    """Decode ``arr`` a band of rows (along ``row_axis``) at a time, aligned to its chunks."""
    chunk = int(getattr(arr, "chunks", (1,) * arr.ndim)[row_axis]) or 1
    rows = max(chunk, _BAND_PIXELS // max(width, 1) // chunk * chunk)
    for y0 in range(0, arr.shape[row_axis], rows):
        index = tuple(slice(y0, y0 + rows) if i == row_axis else slice(None) for i in range(arr.ndim))
        try:
            band = np.asarray(arr[index])
        except Exception as exc:
            raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
        yield band


def _image_layout(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, int, int], int]:
    """``(H, W, C)`` of a stored image shape (as :func:`~seglab.data.io.read_image` reads it) and
    the axis of its rows."""
    if len(shape) == 2:
        return (shape[0], shape[1], 1), 0
    if len(shape) == 3 and shape[0] <= 4 and shape[-1] > 4:  # channel-first TIFF
        return (shape[1], shape[2], shape[0]), 1
    if len(shape) != 3 or not 1 <= shape[-1] <= 4:
        raise DataError(path, f"expected a 2-D image with 1-4 channels, got array of shape {shape}")
    return (shape[0], shape[1], shape[2]), 0


def _label_layout(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, int], int]:
    """``(H, W)`` of a stored label shape (as :func:`~seglab.data.io.read_label` reads it) and
    the axis of its rows."""
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise DataError(path, f"label map must be single-channel, got {shape[-1]} channels")
    kept = [i for i, n in enumerate(shape) if n != 1]
    if len(kept) != 2:
        raise DataError(path, f"label map must be 2-D, got array of shape {tuple(n for n in shape if n != 1)}")
    return (shape[kept[0]], shape[kept[1]]), kept[0]


def _check_label_band(path: Path, band: np.ndarray) -> np.ndarray:
    """The band as integers, or the DataError :func:`~seglab.data.io.read_label` would raise."""
    if band.dtype == bool:
        return band.astype(np.uint8)
    if band.dtype.kind == "f" and (not np.all(np.isfinite(band)) or np.any(band != np.round(band))):
        raise DataError(path, "label map holds non-integer values")
    if band.dtype.kind in "if" and band.size and band.min() < 0:
        raise DataError(path, "label map holds negative values")
    return band.astype(np.int64, copy=False) if band.dtype.kind == "f" else band


def _merge_counts(a: tuple[np.ndarray, np.ndarray], values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    merged, inverse = np.unique(np.concatenate([a[0], values.astype(np.int64)]), return_inverse=True)
    return merged, np.bincount(inverse, weights=np.concatenate([a[1], counts]), minlength=merged.size).astype(np.int64)


def _label_stats(report: DataReport, path: Path, arr: Any, row_axis: int, shape: tuple[int, int]) -> None:
    """Instance counts and areas, or the class histogram, of a label read band by band."""
    counts = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    for band in _bands(path, arr, row_axis, shape[1]):
        band = _check_label_band(path, band)
        if report.task == "instance":
            band = band[band > 0]
        counts = _merge_counts(counts, *np.unique(band, return_counts=True))
    values, pixels = counts
    if report.task == "instance":
        if values.size == 0:
            _problem(report, path, "empty label (no instance)")
        report.instances_per_image.append(int(values.size))
        report.object_areas_sum += int(pixels.sum())
    else:
        report.class_pixels.update(dict(zip(values.tolist(), pixels.tolist(), strict=True)))
        if not np.any((values != 0) & (values != 255)):
            _problem(report, path, "empty label (only background / ignore)")


def _check_image(report: DataReport, path: Path) -> tuple[int, int] | None:
    """Record the image's size, channels and dtype (from its header) and decode it band by band."""
    try:
        with _open_stored(path) as arr:
            (h, w, c), row_axis = _image_layout(path, tuple(arr.shape))
            for _ in _bands(path, arr, row_axis, w * c):
                pass
            dtype = "uint8" if arr.dtype == bool else str(arr.dtype)
    except DataError as exc:
        report.problems.append(str(exc))
        return None
    report.sizes.append((h, w))
    report.channels[c] += 1
    report.image_channels.append((path, c))
    report.dtypes[dtype] += 1
    return h, w


def _check_pair(report: DataReport, image_path: Path, label_path: Path | None) -> None:
    size = _check_image(report, image_path)
    if label_path is None or (size is None and label_path.suffix.lower() == ".xml"):
        return
    try:
        if label_path.suffix.lower() == ".xml":
            from seglab.data.monuseg import read_monuseg_xml

            label = read_monuseg_xml(label_path, size)
            _label_stats(report, label_path, label, 0, label.shape)
            return
        with _open_stored(label_path) as arr:
            shape, row_axis = _label_layout(label_path, tuple(arr.shape))
            if size is not None and shape != size:
                _problem(report, label_path, f"label shape {shape} differs from image {image_path} shape {size}")
                return
            _label_stats(report, label_path, arr, row_axis, shape)
    except DataError as exc:
        report.problems.append(str(exc))


def check_dataset(root: Path, *, task: str = "instance") -> DataReport:
    """Check a folder data set (``root/images``, ``root/labels`` or ``root/annotations``).

    Every file is read once, one at a time. Problems do not stop the check; they are collected.

    Raises:
        DataError: ``root`` is not a folder.
        ConfigError: unknown task.
    """
    if task not in TASKS:
        raise unknown_choice("task", task, TASKS)
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "folder not found")
    report = DataReport(root, task)
    images = _files(root / "images", IMAGE_SUFFIXES)
    labels: dict[str, list[Path]] = {}
    for name in _LABEL_DIRS:
        for stem, paths in _files(root / name, (*LABEL_SUFFIXES, ".xml")).items():
            labels.setdefault(stem, []).extend(paths)
    if not images:
        _problem(report, root / "images", "no images found (.png, .jpg, .jpeg, .tif, .tiff)")
    report.n_images = sum(len(p) for p in images.values())
    report.n_labels = sum(len(p) for p in labels.values())
    for stem, paths in images.items():
        if len(paths) > 1:
            _problem(report, paths[1], f"second image with stem {stem!r} (also {paths[0]})")
        if stem not in labels:
            _problem(report, paths[0], f"missing label (no {root / 'labels' / stem}.tif|tiff|png)")
        elif len(labels[stem]) > 1:
            _problem(report, labels[stem][1], f"second label for stem {stem!r} (also {labels[stem][0]})")
        report.n_pairs += stem in labels
        _check_pair(report, paths[0], labels[stem][0] if stem in labels else None)
    for stem, paths in labels.items():
        if stem not in images:
            _problem(report, paths[0], "label without image")
    _check_channels(report)
    return report


def _check_channels(report: DataReport) -> None:
    """Training needs one channel count in every image: each image with another count than the
    most common one (ties: the first image's) is a problem."""
    if len(report.channels) < 2:
        return
    common, count = report.channels.most_common(1)[0]
    total = len(report.image_channels)
    for path, channels in report.image_channels:
        if channels != common:
            _problem(report, path, f"has {channels} channels, {count} of the {total} images have {common} "
                                   "(training needs one channel count)")


def format_report(report: DataReport) -> str:
    """Human-readable summary of a :class:`DataReport`, problems last, one per line."""
    lines = [f"{report.root}: {report.n_images} images, {report.n_labels} labels, {report.n_pairs} pairs ({report.task} task)"]
    if report.sizes:
        hs, ws = zip(*report.sizes, strict=True)
        lines.append(f"image sizes (H x W): min {min(hs)} x {min(ws)}, max {max(hs)} x {max(ws)}")
        lines.append("channels: " + ", ".join(f"{c} ({n} images)" for c, n in sorted(report.channels.items())))
        lines.append("dtypes: " + ", ".join(f"{d} ({n} images)" for d, n in sorted(report.dtypes.items())))
    if report.instances_per_image:
        counts = np.array(report.instances_per_image)
        total = int(counts.sum())
        mean_area = report.object_areas_sum / total if total else 0.0
        lines.append(
            f"instances per image: mean {counts.mean():.1f}, min {counts.min()}, max {counts.max()}; "
            f"{total} in all, mean area {mean_area:.1f} px"
        )
    if report.class_pixels:
        total = sum(report.class_pixels.values())
        hist = ", ".join(f"{c}: {100 * n / total:.2f}%" for c, n in sorted(report.class_pixels.items()))
        lines.append(f"class pixels: {hist}")
    lines.append(f"problems: {len(report.problems)}")
    lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)
