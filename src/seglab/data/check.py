"""``seglab data check``: read every file of a folder data set once, report statistics and
every problem found (missing label, label without image, size mismatch, unreadable file, empty
label), one line each naming the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seglab.data.io import IMAGE_SUFFIXES, LABEL_SUFFIXES, read_image, read_label
from seglab.errors import DataError, unknown_choice

TASKS = ("instance", "semantic")
_LABEL_DIRS = ("labels", "annotations")


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


def _read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if path.suffix.lower() == ".xml":
        from seglab.data.monuseg import read_monuseg_xml

        return read_monuseg_xml(path, shape)
    return read_label(path)


def _label_stats(report: DataReport, path: Path, label: np.ndarray) -> None:
    if report.task == "instance":
        ids, areas = np.unique(label[label > 0], return_counts=True)
        if ids.size == 0:
            _problem(report, path, "empty label (no instance)")
        report.instances_per_image.append(int(ids.size))
        report.object_areas_sum += int(areas.sum())
    else:
        values, pixels = np.unique(label, return_counts=True)
        report.class_pixels.update(dict(zip(values.tolist(), pixels.tolist(), strict=True)))
        if not np.any((label != 0) & (label != 255)):
            _problem(report, path, "empty label (only background / ignore)")


def _check_pair(report: DataReport, image_path: Path, label_path: Path | None) -> None:
    try:
        image = read_image(image_path)
    except DataError as exc:
        report.problems.append(str(exc))
        image = None
    if image is not None:
        report.sizes.append(tuple(image.shape[:2]))
        report.channels[image.shape[2]] += 1
        report.dtypes[str(image.dtype)] += 1
    if label_path is None or (image is None and label_path.suffix.lower() == ".xml"):
        return
    try:
        label = _read_label(label_path, image.shape[:2] if image is not None else (0, 0))
    except DataError as exc:
        report.problems.append(str(exc))
        return
    if image is not None and label.shape != image.shape[:2]:
        _problem(report, label_path, f"label shape {label.shape} differs from image {image_path} shape {image.shape[:2]}")
        return
    _label_stats(report, label_path, label)


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
    return report


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
