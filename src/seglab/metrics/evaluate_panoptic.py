"""``seglab evaluate --task panoptic``: predicted instance + class maps against a panoptic folder.

Ground truth: the panoptic folder format (:mod:`seglab.data.panoptic`: ``labels/``, ``classes/``,
``classes.yaml``). Prediction per stem, in ``PRED`` (or ``PRED/labels``):
``<stem>_instances.tif`` and ``<stem>_classes.png``, as ``seglab predict`` writes them.

Figures, each named as its community names it:

* panopticapi (Kirillov et al. 2019): per class PQ, SQ, DQ (= RQ) from counts pooled over all
  images, and their means over all classes (``PQ``), the thing classes (``PQ_th``) and the stuff
  classes (``PQ_st``); void (255) as panopticapi;
* CoNIC's ``mPQ+`` (per-class counts pooled over images, mean over the thing classes);
* PanNuke's ``mPQ`` and ``bPQ`` (per image, classes absent from an image's ground truth skipped,
  then the mean over images); see :mod:`seglab.metrics.panoptic`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.data.io import find_file, read_label
from seglab.errors import DataError
from seglab.metrics.panoptic import (
    NucleusTypeMetrics,
    PanopticMetrics,
    panoptic_counts,
    scores_from_counts,
)

AGGREGATION = (
    "pq, sq, dq (and per class): panopticapi, counts pooled over all images, IoU > 0.5 (strictly), 255 void; "
    "pq_things / pq_stuff: their means over thing / stuff classes; mpq_plus: CoNIC's multi-class PQ+ "
    "(TP/FP/FN/IoU pooled over images per nucleus type, mean over types); mpq and bpq: PanNuke's "
    "(per image, types absent from the image's ground truth skipped, mean over images). Per-image rows: "
    "panopticapi PQ of that image alone."
)


def _prediction(pred_dir: Path, stem: str) -> tuple[Path, Path]:
    for folder in (pred_dir, pred_dir / "labels"):
        inst = find_file(folder, f"{stem}_instances", (".tif", ".tiff", ".png"))
        cls = find_file(folder, f"{stem}_classes", (".png", ".tif", ".tiff"))
        if inst is not None and cls is not None:
            return inst, cls
    raise DataError(pred_dir, f"no prediction for {stem} (looked for {stem}_instances.tif and {stem}_classes.png)")


def evaluate_panoptic(pred_dir: str | Path, gt_dir: str | Path) -> dict:
    """Score every ground-truth image of a panoptic folder against its prediction.

    Returns:
        ``{"task", "classes", "per_image", "metrics", "aggregation"}``; ``metrics`` holds the
        module docstring's figures and ``per_class`` ``{name: {kind, pq, sq, dq, tp, fp, fn,
        pq_plus, pq_pannuke}}``.
    """
    from seglab.data.panoptic import read_classes, read_panoptic

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "folder not found")
    classes = read_classes(gt_dir)
    k = len(classes)
    things = [i for i, c in enumerate(classes) if c.thing]
    stuffs = [i for i, c in enumerate(classes) if not c.thing]
    labels = sorted(p for p in (gt_dir / "labels").glob("*") if p.suffix.lower() in (".tif", ".tiff", ".png"))
    if not labels:
        raise DataError(gt_dir / "labels", "no ground-truth instance maps")
    pooled, nuclei = PanopticMetrics(things=things, stuffs=stuffs), NucleusTypeMetrics(classes=things)
    rows = []
    for label in labels:
        gi, gc = read_panoptic(label, classes)
        inst_path, cls_path = _prediction(pred_dir, label.stem)
        pi, pc = read_label(inst_path), read_label(cls_path)
        for path, arr in ((inst_path, pi), (cls_path, pc)):
            if arr.shape != gi.shape:
                raise DataError(path, f"shape {arr.shape} differs from ground truth {label} {gi.shape}")
        bad = (pc >= k) & (pc != 255)
        if bad.any():
            raise DataError(cls_path, f"class id {int(pc[bad].flat[0])} is missing from {gt_dir / 'classes.yaml'}")
        counts = panoptic_counts(gc, gi, pc, pi, things=things, stuffs=stuffs)
        pooled.update(gc, gi, pc, pi)
        nuclei.update(gi, np.where(gc == 255, 0, gc), pi, np.where(pc == 255, 0, pc))
        image = scores_from_counts(counts, things)
        b = nuclei.binary[-1]
        rows.append({"stem": label.stem, "pq": image["pq"], "pq_things": image["pq_things"],
                     "pq_stuff": image["pq_stuff"], "binary_pq": b[3] / max(b[0] + 0.5 * (b[1] + b[2]), 1e-12)})
    overall, types = pooled.compute(), nuclei.compute()
    per_class = {}
    for i, c in enumerate(classes):
        pc_ = overall["per_class"][i]
        entry = {"kind": "thing" if c.thing else "stuff", **{key: pc_[key] for key in ("pq", "sq", "dq", "tp", "fp", "fn")}}
        if c.thing:
            entry.update(pq_plus=types["pq_plus_per_class"][i], pq_pannuke=types["pq_per_class"][i])
        per_class[c.name] = entry
    metrics = {key: overall[key] for key in ("pq", "sq", "dq", "pq_things", "pq_stuff")}
    metrics.update(mpq_plus=types["mpq_plus"], mpq=types["mpq"], bpq=types["bpq"],
                   binary_pq=float(np.mean([r["binary_pq"] for r in rows])), per_class=per_class)
    return {"task": "panoptic", "classes": [c.to_dict() for c in classes], "per_image": rows,
            "metrics": metrics, "aggregation": AGGREGATION}


def _cell(v: object) -> str:
    return "     nan" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:8.4f}"


def format_panoptic(report: dict) -> str:
    """Per-image rows, the per-class table and the aggregates, each named."""
    rows = report["per_image"]
    width = max([len("image")] + [len(r["stem"]) for r in rows])
    keys = ("pq", "pq_things", "pq_stuff", "binary_pq")
    lines = [f"{'image':<{width}}  " + "  ".join(f"{k:>9}" for k in keys)]
    lines += [f"{r['stem']:<{width}}  " + "  ".join(f"{_cell(r[k]):>9}" for k in keys) for r in rows]
    m = report["metrics"]
    names = max(len(n) for n in m["per_class"])
    lines += ["", f"{'class':<{names}}  kind        PQ        SQ        DQ     TP     FP     FN  PQ+ CoNIC  PQ PanNuke"]
    for name, c in m["per_class"].items():
        extra = f"  {_cell(c.get('pq_plus')):>9}  {_cell(c.get('pq_pannuke')):>10}" if c["kind"] == "thing" else ""
        lines.append(f"{name:<{names}}  {c['kind']:<5}  {_cell(c['pq'])}  {_cell(c['sq'])}  {_cell(c['dq'])}  "
                     f"{c['tp']:5d}  {c['fp']:5d}  {c['fn']:5d}{extra}")
    lines += [
        "",
        f"PQ (panopticapi, all classes, pooled) {m['pq']:.4f}   PQ_th {m['pq_things']:.4f}   PQ_st {m['pq_stuff']:.4f}",
        f"mPQ+ (CoNIC, pooled over images) {m['mpq_plus']:.4f}",
        f"mPQ (PanNuke, per image) {_cell(m['mpq']).strip()}   bPQ (PanNuke, per image) {_cell(m['bpq']).strip()}",
        f"binary PQ (mean over images) {m['binary_pq']:.4f}",
    ]
    return "\n".join(lines)
