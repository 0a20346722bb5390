"""Prediction and outputs of a panoptic checkpoint (``seglab predict`` with a panoptic model).

The model gives the 3-class instance probabilities and the class probabilities (one stack,
:func:`seglab.spec.recipes.decoder_input`); instances are decoded block by block from the first
three channels (the checkpoint's watershed) and fused with the class probabilities
(:func:`seglab.instances.panoptic.fuse_panoptic`). The whole probability stack of an image is
held in memory (``(3 + K) x H x W`` float32), so very large images belong to the instance task's
streaming path.

Per image ``<stem>`` (every file atomic):

* ``<stem>_classes.png``: the class of every pixel (index into ``classes.yaml``; 255 void);
* ``<stem>_instances.tif``: instance ids (as the instance task);
* ``<stem>_panoptic.png`` + ``<stem>_panoptic.json``: COCO panoptic (segment id ``R + 256 G +
  256^2 B``; one segment per instance and per stuff class present; ``segments_info`` with
  ``category_id`` = class index + 1, ``area``, ``bbox``, ``iscrowd`` 0, and ``type_prob`` for
  things; ``categories`` with ``isthing`` and ``color``);
* ``<stem>.geojson``: one QuPath detection per nucleus, ``classification: {name, color}`` of its
  class and ``type_prob``;
* ``<stem>_overlay.png``: stuff regions tinted and nuclei outlined in their class colours, with a
  legend.

``summary.csv`` holds per image the instance count, mean area and seconds as for the instance
task; ``summary_classes.csv`` beside it holds per image every thing class's count and density per
mm² (when the image states its µm/px) or per megapixel, and every stuff class's pixel share.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from seglab.fileio import write_json_atomic, write_text_atomic

CLASS_SUMMARY = "summary_classes.csv"


def _classes(predictor: Any) -> list[dict[str, Any]]:
    return predictor.meta["panoptic"]["classes"]


def predict_panoptic(predictor: Any, source: Any, on_tiles: Any = None) -> Any:
    """:class:`~seglab.instances.panoptic.PanopticResult` of one image (module docstring)."""
    from seglab.inference.stitch import decode_blockwise
    from seglab.instances.panoptic import fuse_panoptic

    height, width = source.shape[:2]
    probs = np.zeros((0, height, width), np.float32)
    for y0, y1, band in predictor.iter_probs(source, on_tiles):
        if probs.shape[0] == 0:
            probs = np.zeros((band.shape[0], height, width), np.float32)
        probs[:, y0:y1] = band
    instances = decode_blockwise([(0, height, probs)], (height, width), predictor.decode_probs,  # its first 3 channels
                                 block=predictor.block, margin=predictor.margin)
    classes = _classes(predictor)
    return fuse_panoptic(instances, probs[3:], things=[i for i, c in enumerate(classes) if c["thing"]],
                         stuffs=[i for i, c in enumerate(classes) if not c["thing"]],
                         min_stuff_area=predictor.meta["panoptic"].get("min_stuff_area", 0))


def panoptic_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """The files written for one image (what ``--skip-existing`` checks)."""
    out = Path(out_dir)
    return {"classes": out / f"{stem}_classes.png", "instances": out / f"{stem}_instances.tif",
            "panoptic_png": out / f"{stem}_panoptic.png", "panoptic_json": out / f"{stem}_panoptic.json",
            "geojson": out / f"{stem}.geojson", "overlay": out / f"{stem}_overlay.png"}


def coco_panoptic(result: Any, classes: list[dict[str, Any]], *, stem: str, file_name: str) -> tuple[np.ndarray, dict]:
    """The COCO panoptic PNG (``H x W x 3`` uint8) and JSON of one result."""
    inst, cls = result.instances, result.classes.astype(np.int64)
    n = int(inst.max(initial=0))
    seg = inst.astype(np.int64).copy()
    segments = []
    if n:
        from scipy import ndimage as ndi

        ids = np.array(sorted(result.instance_class))
        area = np.bincount(inst.ravel(), minlength=n + 1)
        objects = ndi.find_objects(inst)
        for i in ids:
            sl = objects[i - 1]
            segments.append({"id": int(i), "category_id": result.instance_class[int(i)] + 1, "iscrowd": 0,
                             "area": int(area[i]), "bbox": [sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start],
                             "type_prob": round(result.type_prob[int(i)], 4)})
    for c, entry in enumerate(classes):
        mask = (inst == 0) & (cls == c)
        if entry["thing"] or not mask.any():
            continue
        sid = n + 1 + c
        seg[mask] = sid
        rows, cols = np.nonzero(mask)
        segments.append({"id": sid, "category_id": c + 1, "iscrowd": 0, "area": int(mask.sum()),
                         "bbox": [int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1]})
    seg[(inst == 0) & (cls == 255)] = 0
    png = np.stack([seg % 256, seg // 256 % 256, seg // 65536 % 256], -1).astype(np.uint8)
    h, w = inst.shape
    doc = {
        "images": [{"id": 1, "file_name": file_name, "height": h, "width": w}],
        "annotations": [{"image_id": 1, "file_name": f"{stem}_panoptic.png", "segments_info": segments}],
        "categories": [{"id": i + 1, "name": c["name"], "isthing": int(c["thing"]), "color": list(c["color"])}
                       for i, c in enumerate(classes)],
    }
    return png, doc


def panoptic_overlay(image: np.ndarray, result: Any, classes: list[dict[str, Any]]) -> np.ndarray:
    """Stuff tinted (25 %) and nuclei outlined in their class colours, with a legend box."""
    from PIL import Image, ImageDraw

    from seglab.inference.writers import display_rgb, overlay

    rgb = display_rgb(image).astype(np.float32)
    colors = np.array([c["color"] for c in classes] + [[0, 0, 0]] * (256 - len(classes)), np.float32)
    stuff = (result.instances == 0) & (result.classes != 255)
    rgb[stuff] = 0.75 * rgb[stuff] + 0.25 * colors[result.classes[stuff]]
    out = rgb.astype(np.uint8)
    for c, entry in enumerate(classes):
        if entry["thing"]:
            keep = np.zeros(int(result.instances.max(initial=0)) + 1, bool)
            keep[[i for i, k in result.instance_class.items() if k == c]] = True
            out = overlay(out, np.where(keep[result.instances], result.instances, 0), tuple(entry["color"]))
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    line = 12
    width = 10 + 7 * max(len(c["name"]) for c in classes) + 14
    draw.rectangle([2, 2, 2 + width, 4 + line * len(classes)], fill=(255, 255, 255))
    for i, c in enumerate(classes):
        y = 4 + i * line
        draw.rectangle([5, y + 2, 13, y + 10], fill=tuple(c["color"]), outline=(0, 0, 0))
        draw.text((17, y), c["name"], fill=(0, 0, 0))
    return np.asarray(pil)


def write_panoptic_outputs(out_dir: str | Path, stem: str, image: np.ndarray, result: Any,
                           classes: list[dict[str, Any]], *, file_name: str) -> dict[str, Path]:
    """Write every output of one image (module docstring) and return their paths."""
    from seglab.data.io import write_image, write_label
    from seglab.inference.writers import instance_features

    paths = panoptic_paths(out_dir, stem)
    write_label(paths["classes"], result.classes)
    write_label(paths["instances"], result.instances)
    png, doc = coco_panoptic(result, classes, stem=stem, file_name=file_name)
    write_image(paths["panoptic_png"], png)
    write_json_atomic(paths["panoptic_json"], doc)
    names = {i: classes[c]["name"] for i, c in result.instance_class.items()}
    features = instance_features(result.instances, classes=names, colors={c["name"]: c["color"] for c in classes})
    for f in features:
        f["properties"]["type_prob"] = round(result.type_prob[f["properties"]["id"]], 4)
    write_json_atomic(paths["geojson"], {"type": "FeatureCollection", "features": features}, indent=None)
    write_image(paths["overlay"], panoptic_overlay(image, result, classes))
    return paths


def panoptic_row(stem: str, result: Any, classes: list[dict[str, Any]], seconds: float, mpp: float | None = None) -> dict[str, Any]:
    """One ``summary.csv`` row: counts, pixel shares and densities per class."""
    h, w = result.instances.shape
    area = h * w * (mpp * mpp * 1e-6 if mpp else 1e-6)  # mm² or megapixels
    unit = "per_mm2" if mpp else "per_mpx"
    counts = np.bincount(list(result.instance_class.values()), minlength=len(classes))
    share = np.bincount(result.classes[result.instances == 0].ravel(), minlength=256)[: len(classes)] / (h * w)
    sizes = np.bincount(result.instances.ravel())[1:]
    sizes = sizes[sizes > 0]
    row: dict[str, Any] = {"stem": stem, "instances": len(result.instance_class),
                           "mean_area": f"{sizes.mean():.1f}" if sizes.size else "0", "seconds": f"{seconds:.3f}"}
    for c, entry in enumerate(classes):
        if entry["thing"]:
            row[f"{entry['name']}_count"] = int(counts[c])
            row[f"{entry['name']}_{unit}"] = f"{counts[c] / area:.1f}"
        else:
            row[f"{entry['name']}_share"] = f"{share[c]:.4f}"
    return row


def predict_panoptic_one(predictor: Any, source: Any, path: Path, out_dir: Path, progress: Any) -> dict[str, Any]:
    """Predict one image with a panoptic checkpoint, write its outputs, return its summary row."""
    from seglab.inference.source import check_finite

    start = time.perf_counter()
    check_finite(source)
    result = predict_panoptic(predictor, source, progress.tiles)
    classes = _classes(predictor)
    write_panoptic_outputs(out_dir, path.stem, source.read_all(), result, classes, file_name=path.name)
    row = panoptic_row(path.stem, result, classes, time.perf_counter() - start, getattr(source, "mpp", None))
    merge_class_summary(out_dir / CLASS_SUMMARY, {path.stem: row})
    counts = ", ".join(f"{row[k]} {k.removesuffix('_count')}" for k in row if k.endswith("_count"))
    progress.line(f"{row['instances']} instances ({counts}), {row['seconds']} s")
    return row


def merge_class_summary(path: str | Path, rows: dict[str, dict[str, Any]]) -> None:
    """Add (or replace) ``rows`` in ``summary_classes.csv`` (every column the rows hold), atomically,
    under the same folder lock as ``summary.csv`` (processes of ``--devices N`` share the file)."""
    from seglab.inference.summary import folder_lock

    path = Path(path)
    with folder_lock(path.parent):
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                rows = {**{r["stem"]: r for r in csv.DictReader(f) if "stem" in r}, **rows}
        fields: list[str] = []
        for row in rows.values():
            fields += [k for k in row if k not in fields]
        table = [fields] + [[rows[stem].get(k, "") for k in fields] for stem in sorted(rows)]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(table)
        write_text_atomic(path, buf.getvalue())
