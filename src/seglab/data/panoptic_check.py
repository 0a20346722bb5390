"""``seglab data check --task panoptic``: the folder checks of the instance task plus the class list
and the class maps (:mod:`seglab.data.panoptic`).

Problems (one line each, naming the file): ``classes.yaml`` missing, invalid or (with ``--val``)
disagreeing with the validation folder's, a class map
missing or of another size than its instance map, a class id missing from ``classes.yaml``, an
instance with no thing-class pixel, a thing class without any instance in the whole folder.
Reported but not problems (reading resolves them): instances whose pixels disagree on the class
(they take the majority class) and thing-class pixels outside every instance (void).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.data.check import DataReport, check_dataset, format_report
from seglab.data.io import read_label
from seglab.data.panoptic import (
    CLASS_DIR,
    CLASSES_FILE,
    class_map_path,
    instance_votes,
    read_classes,
    resolve,
    same_classes,
)
from seglab.errors import DataError

_SHOWN_IDS = 8  # disagreeing instance ids listed per image


def check_panoptic(root: str | Path, val: str | Path | None = None) -> tuple[DataReport, list[str]]:
    """Check a panoptic folder (and that ``val``'s ``classes.yaml`` agrees with it, when given);
    returns the report (problems included) and the panoptic lines."""
    root = Path(root)
    report = check_dataset(root, task="instance")
    report.task = "panoptic"
    lines: list[str] = []
    try:
        classes = read_classes(root)
    except DataError as exc:
        report.problems.append(str(exc))
        return report, lines
    if val is not None:
        try:
            same_classes(root, val)
        except DataError as exc:
            report.problems.append(str(exc))
    kinds = ", ".join(f"{i} {c.name} ({'thing' if c.thing else 'stuff'})" for i, c in enumerate(classes))
    lines.append(f"classes: {kinds}")
    is_thing = np.array([c.thing for c in classes])
    pixels = np.zeros(len(classes), np.int64)
    instances = np.zeros(len(classes), np.int64)
    disagree_total = 0
    label_dir = root / "labels"
    labels = sorted(p for p in label_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png")) if label_dir.is_dir() else []
    for label_path in labels:
        class_path = class_map_path(label_path)
        if class_path is None:
            report.problems.append(f"{root / CLASS_DIR / label_path.stem}.png: missing class map for {label_path}")
            continue
        try:
            inst, cls = read_label(label_path), read_label(class_path)
            if inst.shape != cls.shape:
                raise DataError(class_path, f"class map shape {cls.shape} differs from instance map {label_path} {inst.shape}")
            resolved, info = resolve(inst, cls, classes, class_path)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        if len(info["no_class"]):
            ids = ", ".join(str(i) for i in info["no_class"][:_SHOWN_IDS])
            report.problems.append(f"{class_path}: {len(info['no_class'])} instances with no class (no thing-class pixel): ids {ids}")
        if len(info["disagreeing"]):
            disagree_total += len(info["disagreeing"])
            ids = ", ".join(str(i) for i in info["disagreeing"][:_SHOWN_IDS])
            more = " ..." if len(info["disagreeing"]) > _SHOWN_IDS else ""
            lines.append(f"{class_path}: {len(info['disagreeing'])} instances disagree on the class, "
                         f"majority taken: ids {ids}{more}")
        if info["stray"]:
            lines.append(f"{class_path}: {info['stray']} thing-class pixels outside every instance (void)")
        pixels += np.bincount(resolved[resolved < len(classes)], minlength=len(classes))
        _, votes = instance_votes(inst, resolved, is_thing)
        instances += np.bincount(votes.argmax(1), minlength=len(classes)) if len(votes) else 0
    class_dir = root / CLASS_DIR
    if class_dir.is_dir():
        stems = {p.stem for p in labels}
        for p in sorted(class_dir.iterdir()):
            if p.is_file() and p.stem not in stems and not p.name.startswith("."):
                report.problems.append(f"{p}: class map without instance map")
    if labels:
        for i, c in enumerate(classes):
            if c.thing and instances[i] == 0:
                report.problems.append(f"{root / CLASSES_FILE}: thing class {i} ({c.name!r}) has no instance in the data")
        total = max(int(pixels.sum()), 1)
        lines.append("per class: " + ", ".join(
            f"{c.name} {100 * pixels[i] / total:.1f}% px" + (f", {instances[i]} instances" if c.thing else "")
            for i, c in enumerate(classes)))
        lines.append(f"instances disagreeing on the class: {disagree_total}")
    return report, lines


def format_panoptic(report: DataReport, lines: list[str]) -> str:
    """:func:`~seglab.data.check.format_report` with the panoptic lines before the problems."""
    text = format_report(report).split("\n")
    at = next(i for i, line in enumerate(text) if line.startswith("problems:"))
    return "\n".join(text[:at] + lines + text[at:])
