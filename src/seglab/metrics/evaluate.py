"""Score a folder of predicted label maps against a folder of ground truth (``seglab evaluate``).

Pairing is by file stem. Ground truth: ``GT/labels/<stem>.(tif|tiff|png)`` when ``GT/labels``
exists, else ``GT/<stem>.(tif|tiff|png|xml)``; a MoNuSeg ``<stem>.xml`` wins over a ``<stem>.tif``
beside it (that one is the image, whose size the polygons are drawn in). Prediction, searched in
``PRED`` then ``PRED/labels``: ``<stem>_instances.tif`` (instance task) or ``<stem>_classes.png``
(semantic task), else ``<stem>.(tif|tiff|png)``. Extra predictions are ignored.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from seglab.data.io import LABEL_SUFFIXES, find_file, read_label
from seglab.errors import DataError, unknown_choice
from seglab.metrics.aggregate import SCORE_KEYS, InstanceMetrics
from seglab.metrics.pixel import confusion_matrix, scores_from_matrix

TASKS = ("instance", "semantic")
_PRED_NAMES = {"instance": ("_instances", (".tif", ".tiff", ".png")), "semantic": ("_classes", (".png", ".tif", ".tiff"))}
_SEMANTIC_KEYS = ("miou", "pixel_accuracy", "dice")

AGGREGATION = {
    "instance": (
        "metrics: mean over images of the per-image scores (MoNuSeg / HoVer-Net style); metrics_pooled: "
        "each score computed once from counts summed over all images (AJI C and U, PQ TP/FP/FN and IoU sum, "
        "Dice intersection and areas; panopticapi / CoNIC style). PQ and F1 match a pair when IoU > 0.5 "
        "(strictly); dice is the foreground pixel Dice."
    ),
    "semantic": (
        "metrics: mean over images of the per-image scores (per class, images where the class is absent from "
        "both target and prediction are skipped); metrics_pooled: the scores of one confusion matrix summed over "
        "all pixels of all images (the usual data-set mIoU). Target 255 is ignored; dice is the mean Dice over classes."
    ),
}


def find_ground_truth(gt_dir: Path) -> dict[str, Path]:
    """Map stem -> ground-truth file (see module docstring)."""
    folder = gt_dir / "labels" if (gt_dir / "labels").is_dir() else gt_dir
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.is_file() and (suffix == ".xml" or (suffix in LABEL_SUFFIXES and found.get(path.stem) is None)):
            found[path.stem] = path
    if not found:
        raise DataError(folder, "no ground-truth label files (.tif, .tiff, .png, .xml)")
    return found


def find_prediction(pred_dir: Path, stem: str, task: str) -> Path | None:
    """The prediction file of ``stem``, or None."""
    tag, suffixes = _PRED_NAMES[task]
    for folder in (pred_dir, pred_dir / "labels"):
        for name in (f"{stem}{tag}", stem):
            path = find_file(folder, name, suffixes)
            if path is not None:
                return path
    return None


def _read_gt(path: Path, pred_shape: tuple[int, ...]) -> np.ndarray:
    if path.suffix.lower() != ".xml":
        return read_label(path)
    from seglab.data.io import read_image
    from seglab.data.monuseg import read_monuseg_xml  # lazy: optional reader

    image = find_file(path.parent, path.stem, (".tif", ".tiff", ".png"))
    shape = read_image(image).shape[:2] if image is not None else pred_shape
    return read_monuseg_xml(path, shape)


def _pairs(pred_dir: Path, gt_dir: Path, task: str):
    """Yield ``(stem, gt_path, pred_path, gt, pred)`` for every ground-truth file."""
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "folder not found")
    for stem, gt_path in find_ground_truth(gt_dir).items():
        pred_path = find_prediction(pred_dir, stem, task)
        if pred_path is None:
            tag = _PRED_NAMES[task][0]
            raise DataError(gt_path, f"no prediction in {pred_dir} (looked for {stem}{tag}.* and {stem}.*)")
        pred = read_label(pred_path)
        gt = _read_gt(gt_path, pred.shape)
        if gt.shape != pred.shape:
            raise DataError(pred_path, f"shape {pred.shape} differs from ground truth {gt_path} {gt.shape}")
        yield stem, gt_path, pred_path, gt, pred


def json_safe(value: object) -> object:
    """Replace NaN floats with None (valid JSON), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _evaluate_instance(pairs) -> tuple[list, dict, dict]:
    acc = InstanceMetrics()
    rows = []
    for stem, gt_path, pred_path, gt, pred in pairs:
        acc.update(gt, pred)
        rows.append({"stem": stem, "gt": str(gt_path), "pred": str(pred_path), **acc.per_image[-1]})
    out = acc.compute()
    return rows, out["mean"], out["pooled"]


def _check_classes(path: Path, label: np.ndarray, num_classes: int | None) -> int:
    top = int(label[label != 255].max(initial=0))
    if num_classes is not None and top >= num_classes:
        raise DataError(path, f"label map holds class {top} outside 0..{num_classes - 1}")
    return top + 1


def _semantic_summary(scores: dict) -> dict:
    out = {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"], "dice": scores["mean_dice"]}
    return {**out, "per_class": {"iou": scores["iou"], "dice": scores["dice"]}}


def _evaluate_semantic(pairs, num_classes: int | None) -> tuple[list, dict, dict]:
    rows, matrices = [], []
    for stem, gt_path, pred_path, gt, pred in pairs:
        k = max(_check_classes(gt_path, gt, num_classes), _check_classes(pred_path, pred, num_classes))
        matrices.append(confusion_matrix(pred, gt, k, ignore_index=255))
        rows.append({"stem": stem, "gt": str(gt_path), "pred": str(pred_path)})
    k = num_classes or max(len(m) for m in matrices)
    padded = [np.pad(m, (0, k - len(m))) for m in matrices]
    per_image = [scores_from_matrix(m) for m in padded]
    for row, scores in zip(rows, per_image, strict=True):
        row.update(_semantic_summary(scores))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        mean = {key: float(np.nanmean([r[key] for r in rows])) for key in _SEMANTIC_KEYS}
        mean["per_class"] = {
            key: np.nanmean(np.array([r["per_class"][key] for r in rows], float), 0).tolist()
            for key in ("iou", "dice")
        }
    return rows, mean, _semantic_summary(scores_from_matrix(sum(padded)))


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, *, task: str, num_classes: int | None = None) -> dict:
    """Score every ground-truth label map against its prediction.

    Args:
        pred_dir: folder of predicted label maps.
        gt_dir: folder of ground truth (``labels/`` inside it is used when present).
        task: ``"instance"`` (AJI, AJI+, PQ, SQ, DQ, F1, foreground Dice), ``"semantic"``
            (mIoU, pixel accuracy, mean Dice, per-class IoU and Dice; target 255 ignored) or
            ``"panoptic"`` (:mod:`seglab.metrics.evaluate_panoptic`; ``gt_dir`` a panoptic folder).
        num_classes: semantic classes K; default: largest class found + 1.

    Returns:
        ``{"task", "per_image": [{"stem", "gt", "pred", scores...}], "metrics": mean over images,
        "metrics_pooled": pooled over all images, "aggregation": explanation}``; NaN is None.

    Raises:
        SeglabError: unknown task. DataError: missing folder, no ground truth, missing
            prediction, unreadable file, shape mismatch, class out of range.
    """
    if task == "panoptic":
        from seglab.metrics.evaluate_panoptic import evaluate_panoptic

        return json_safe(evaluate_panoptic(pred_dir, gt_dir))  # type: ignore[return-value]
    if task not in TASKS:
        raise unknown_choice("task", task, (*TASKS, "panoptic"))
    pairs = _pairs(Path(pred_dir), Path(gt_dir), task)
    if task == "instance":
        rows, mean, pooled = _evaluate_instance(pairs)
    else:
        rows, mean, pooled = _evaluate_semantic(pairs, num_classes)
    report = {"task": task, "per_image": rows, "metrics": mean, "metrics_pooled": pooled,
              "aggregation": AGGREGATION[task]}
    return json_safe(report)  # type: ignore[return-value]


def format_table(report: dict) -> str:
    """A text table: one row per image, then the ``mean`` and ``pooled`` aggregate rows."""
    if report["task"] == "panoptic":
        from seglab.metrics.evaluate_panoptic import format_panoptic

        return format_panoptic(report)
    keys = SCORE_KEYS if report["task"] == "instance" else _SEMANTIC_KEYS
    rows = [(r["stem"], r) for r in report["per_image"]]
    rows += [("mean", report["metrics"]), ("pooled", report["metrics_pooled"])]
    width = max([len("image")] + [len(name) for name, _ in rows])
    header = f"{'image':<{width}}  " + "  ".join(f"{k:>8}" for k in keys)
    lines = [header, "-" * len(header)]
    for name, r in rows:
        cells = ("     nan" if r.get(k) is None else f"{r[k]:8.4f}" for k in keys)
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
