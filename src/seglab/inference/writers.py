"""Prediction outputs that users' tools open; every file is written atomically.

Per image ``<stem>``:

* ``<stem>_instances.tif``: instance ids, uint16 (uint32 past 65,535), zlib (napari, Fiji);
* ``<stem>_classes.png``: class indices (semantic task);
* ``<stem>_overlay.png``: label contours drawn on the image;
* ``<stem>.geojson``: a FeatureCollection (RFC 7946), one Feature per instance: a ``Polygon``, or
  a ``MultiPolygon`` when the instance is in several 4-connected pieces (possible after
  stitching), largest piece first, as QuPath writes them. Each polygon is its exterior ring then
  one interior ring per hole; rings are closed, exteriors counter-clockwise and holes clockwise
  in the ``(x, y)`` plane. Coordinates are ``[x, y]`` level-0 pixels with pixel ``(row, col)``
  covering ``[col, col + 1) x [row, row + 1)`` (QuPath's convention). Properties: ``id``,
  ``area`` (pixels of the instance: every piece, holes excluded, as the geometry), ``centroid``
  ``[x, y]``, QuPath's ``objectType`` and ``classification`` ``{name, color}`` (the instance's
  class where the model gives one, else ``Nucleus``); imports into QuPath with File > Import
  objects. Rings trace the pixel edges through marching squares
  (``skimage.measure.find_contours`` at level 0.5), so corners are cut: the polygon area
  (exteriors minus holes) differs from the pixel area by about an eighth of a pixel per corner;
* ``<stem>_coco_part.json`` (with ``--coco``): the image's share of the folder's COCO files
  (size, file name, one entry per instance); kept so that ``--skip-existing`` can rebuild them.

With ``--coco``, per folder run (:func:`write_coco_folder`, assembled after the last image):

* ``coco_results.json``: a COCO *results* file, the list ``pycocotools.coco.COCO.loadRes`` and
  ``COCOeval`` read: ``{image_id, category_id, segmentation (compressed RLE), score, bbox
  [x, y, w, h], area}`` per instance, image ids 1..N in input order. ``score`` is the mean
  foreground probability over the instance's pixels where the model gives probabilities
  (1.0 otherwise, e.g. Mask R-CNN checkpoints), so AP ranks confident instances first;
* ``coco_images.json``: ``{"images": [{id, file_name, height, width}], "categories": [{id,
  name}]}``, the ids the results use: add ``annotations`` from the ground truth to get a COCO
  ground-truth file to evaluate against.

``summary.csv`` lists per image: stem, instances, mean area (px), seconds; slides also fill
``tissue_mm2``, ``objects_per_mm2``, ``mean_area_um2`` and ``tiles_run`` / ``tiles_skipped``
(:mod:`seglab.inference.summary`).
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seglab.data.io import write_image, write_label
from seglab.fileio import write_json_atomic, write_text_atomic

SUMMARY_FIELDS = ("stem", "instances", "mean_area", "seconds", "tissue_mm2", "objects_per_mm2", "mean_area_um2",
                  "tiles_run", "tiles_skipped")  # the last five: slides (seglab.inference.summary)
NUCLEUS_COLOR = [255, 200, 0]
COCO_RESULTS, COCO_IMAGES, COCO_CATEGORY = "coco_results.json", "coco_images.json", "nucleus"
CLASS_PALETTE = ((228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40),
                 (247, 129, 191), (0, 170, 170))  # other classes (ColorBrewer Set1, then teal)


def output_paths(out_dir: str | Path, stem: str, *, task: str = "instance", coco: bool = False) -> dict[str, Path]:
    """The files ``seglab predict`` writes for one image (what ``--skip-existing`` checks)."""
    out_dir = Path(out_dir)
    if task == "semantic":
        return {"classes": out_dir / f"{stem}_classes.png", "overlay": out_dir / f"{stem}_overlay.png"}
    paths = {
        "instances": out_dir / f"{stem}_instances.tif",
        "overlay": out_dir / f"{stem}_overlay.png",
        "geojson": out_dir / f"{stem}.geojson",
    }
    if coco:
        paths["coco"] = out_dir / f"{stem}_coco_part.json"
    return paths


def display_rgb(image: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Any ``H x W [x C]`` image as uint8 RGB: gray repeated, alpha dropped, 16-bit/float stretched
    from ``limits`` (default: its own 0.5-99.5th percentiles) to 0-255."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
    if image.dtype != np.uint8:
        lo, hi = limits if limits is not None else np.percentile(image, (0.5, 99.5)) if image.size else (0, 1)
        scaled = (image.astype(np.float32) - lo) / max(float(hi - lo), 1e-12)
        image = (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else np.ascontiguousarray(image)


def overlay(image: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """The image (as uint8 RGB) with every label's inner contour painted in ``color``."""
    from skimage.segmentation import find_boundaries

    out = display_rgb(image).copy()
    out[find_boundaries(labels, mode="inner") & (labels > 0)] = color
    return out


def mask_polygons(mask: np.ndarray, r0: int, c0: int, scale: float = 1.0) -> list[list[list[list[float]]]]:
    """GeoJSON polygons of a binary crop: one per 4-connected piece, largest first, each its
    exterior ring (counter-clockwise) then its holes (clockwise), closed ``[x, y]`` points.

    Marching squares (``fully_connected="low"``) joins foreground pixels through edges only, as
    ``ndi.label``'s default does, so each piece's contours are its exterior plus one per hole.
    ``scale`` multiplies the coordinates (level-0 pixels per pixel of ``mask``).
    """
    from skimage.measure import find_contours

    pieces, n = ndi.label(mask, structure=_CROSS)
    if n == 1:  # the common case: one piece, no sorting
        order, slices = [1], [(slice(0, mask.shape[0]), slice(0, mask.shape[1]))]
    else:
        order = np.argsort(-np.bincount(pieces.ravel(), minlength=n + 1)[1:], kind="stable") + 1
        slices = ndi.find_objects(pieces)
    polygons = []
    for i in order:
        rows, cols = slices[i - 1]
        crop = pieces[rows, cols] == i
        padded = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2), np.float32)
        padded[1:-1, 1:-1] = crop
        # -1 for the pad, +0.5 from pixel centres to corners (pixel i spans [i, i + 1])
        rings = [np.stack([c[:, 1] + c0 + cols.start - 0.5, c[:, 0] + r0 + rows.start - 0.5], axis=1)
                 for c in find_contours(padded, 0.5)]
        if len(rings) > 1:
            rings.sort(key=lambda r: -abs(_ring_area(r)))  # the exterior encloses the most
        polygons.append([_oriented(rings[0] * scale, ccw=True)] + [_oriented(r * scale, ccw=False) for r in rings[1:]])
    return polygons


_CROSS = ndi.generate_binary_structure(2, 1)


def _ring_area(xy: np.ndarray) -> float:
    return _signed_area(xy[:, 0], xy[:, 1])


def _oriented(xy: np.ndarray, *, ccw: bool) -> list[list[float]]:
    """A closed ring turning the asked way in the ``(x, y)`` plane, rounded to 1/1000 pixel."""
    if (_ring_area(xy) > 0) != ccw:
        xy = xy[::-1]
    if not np.array_equal(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    return np.round(xy, 3).tolist()


def _signed_area(x: np.ndarray, y: np.ndarray) -> float:
    """Shoelace area, positive for counter-clockwise rings in the (x, y) plane."""
    cross = float(np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:])) + float(x[-1] * y[0] - y[-1] * x[0])
    return 0.5 * cross


def class_color(name: str, colors: Mapping[str, Sequence[int]] | None = None) -> list[int]:
    """A class's RGB colour: ``colors[name]`` if given, QuPath's yellow for ``Nucleus``, else a
    colour fixed by the name (the same in every file)."""
    if colors and name in colors:
        return [int(c) for c in colors[name]]
    if name == "Nucleus":
        return list(NUCLEUS_COLOR)
    return list(CLASS_PALETTE[zlib.crc32(name.encode()) % len(CLASS_PALETTE)])


def instance_features(
    labels: np.ndarray, *, object_type: str = "detection", class_name: str = "Nucleus",
    classes: Mapping[int, str] | None = None, colors: Mapping[str, Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """One GeoJSON Feature per instance (see module docstring for the conventions).

    Args:
        labels: ``H x W`` instance map (level-0 pixels).
        object_type: QuPath's ``objectType`` (``detection`` or ``annotation``).
        class_name: the class of instances that ``classes`` does not name.
        classes: instance id -> class name, when the model gives each instance a class.
        colors: class name -> RGB for the ``classification`` (default: :func:`class_color`).
    """
    labels = np.asarray(labels)
    ids = np.flatnonzero(np.bincount(labels.ravel()))
    ids = ids[ids > 0]
    if ids.size == 0:
        return []
    area = ndi.sum_labels(np.ones_like(labels, dtype=np.float64), labels, ids)
    cy, cx = (np.asarray(c) for c in zip(*ndi.center_of_mass(np.ones_like(labels), labels, ids), strict=True))
    slices = ndi.find_objects(labels)
    features = []
    for i, lab in enumerate(ids.tolist()):
        sl = slices[lab - 1]
        polygons = mask_polygons(labels[sl] == lab, sl[0].start, sl[1].start)
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        name = str((classes or {}).get(lab, class_name))
        features.append({
            "type": "Feature",
            "geometry": geometry,
            "properties": {
                "id": lab,
                "area": int(area[i]),
                "centroid": [round(float(cx[i]) + 0.5, 3), round(float(cy[i]) + 0.5, 3)],
                "objectType": object_type,
                "classification": {"name": name, "color": class_color(name, colors)},
                "isLocked": False,
            },
        })
    return features


def to_geojson(labels: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the instances of ``labels``."""
    return {"type": "FeatureCollection", "features": instance_features(labels, **kwargs)}


def coco_rles(labels: np.ndarray) -> dict[int, dict[str, Any]]:
    """Compressed COCO RLE of every instance, in one vectorised pass over the map.

    Equal to ``seglab.data.rle.rle_encode(labels == i)`` for each id ``i``, without an
    ``H x W`` pass per instance.
    """
    from seglab.data.rle import counts_to_string

    h, w = labels.shape
    flat = np.asarray(labels).ravel(order="F")
    pos = np.flatnonzero(flat)
    if pos.size == 0:
        return {}
    order = np.argsort(flat[pos], kind="stable")
    pos, lab = pos[order], flat[pos][order]
    new_run = np.ones(pos.size, dtype=bool)
    new_run[1:] = (np.diff(pos) != 1) | (np.diff(lab) != 0)
    starts = np.flatnonzero(new_run)
    run_lab, run_start = lab[starts], pos[starts]
    run_len = np.diff(np.append(starts, pos.size))
    out = {}
    bounds = np.flatnonzero(np.diff(np.append(run_lab, -1)) != 0) + 1
    for a, b in zip(np.append(0, bounds[:-1]), bounds, strict=True):
        s, n = run_start[a:b], run_len[a:b]
        ends = s + n
        counts = np.empty(2 * (b - a) + 1, dtype=np.int64)
        counts[0::2][:-1] = s - np.append(0, ends[:-1])
        counts[1::2] = n
        counts[-1] = h * w - ends[-1]
        if counts[-1] == 0:  # no trailing run of zeros (as pycocotools)
            counts = counts[:-1]
        out[int(run_lab[a])] = {"size": [h, w], "counts": counts_to_string(counts.tolist())}
    return out


def _coco_objects(labels: np.ndarray) -> list[dict[str, Any]]:
    """``{id, segmentation, area, bbox}`` of every instance (compressed RLE, ``[x, y, w, h]``)."""
    labels = np.asarray(labels)
    slices = ndi.find_objects(labels)
    objects = []
    for lab, rle in coco_rles(labels).items():
        sl = slices[lab - 1]
        y0, x0 = sl[0].start, sl[1].start
        objects.append({
            "id": lab, "segmentation": rle, "area": int(np.count_nonzero(labels[sl] == lab)),
            "bbox": [x0, y0, sl[1].stop - x0, sl[0].stop - y0],
        })
    return objects


def to_coco(labels: np.ndarray, *, file_name: str, image_id: int = 1, category: str = "nucleus") -> dict[str, Any]:
    """COCO instance annotations (one category) of one image with compressed RLE segmentations."""
    annotations = [{**o, "image_id": image_id, "category_id": 1, "iscrowd": 0} for o in _coco_objects(labels)]
    return {
        "images": [{"id": image_id, "file_name": file_name, "height": labels.shape[0], "width": labels.shape[1]}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": category}],
    }


def instance_scores(labels: np.ndarray, foreground: np.ndarray, rows: int = 1024) -> dict[int, float]:
    """Mean of ``foreground`` (probability) over each instance's pixels, ``rows`` rows at a time."""
    labels = np.asarray(labels)
    n = int(labels.max(initial=0)) + 1
    total, count = np.zeros(n), np.zeros(n)
    for y in range(0, labels.shape[0], rows):
        lab = labels[y : y + rows].ravel()
        total += np.bincount(lab, weights=np.asarray(foreground[y : y + rows], np.float64).ravel(), minlength=n)
        count += np.bincount(lab, minlength=n)
    return {int(i): float(total[i] / count[i]) for i in np.flatnonzero(count[1:]) + 1}


def coco_part(
    labels: np.ndarray, *, file_name: str, scores: Mapping[int, float] | None = None,
    classes: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """One image's share of the folder's COCO results (see :func:`write_coco_folder`).

    ``scores`` (instance id -> score, default 1.0) and ``classes`` (instance id -> category name,
    default ``nucleus``); ids and category ids are given when the folder is assembled.
    """
    results = []
    for o in _coco_objects(labels):
        lab = o.pop("id")
        score = 1.0 if scores is None else scores.get(lab, 1.0)
        results.append({"category": str((classes or {}).get(lab, COCO_CATEGORY)), **o, "score": round(float(score), 5)})
    h, w = np.shape(labels)
    return {"file_name": file_name, "height": int(h), "width": int(w), "results": results}


def write_coco_folder(out_dir: str | Path, parts: Sequence[str | Path]) -> tuple[Path, Path]:
    """Assemble per-image parts into ``coco_results.json`` and ``coco_images.json`` (atomically).

    Images get ids 1..N in the order of ``parts`` (missing parts are left out); categories get
    ids 1..C in order of first use (``nucleus`` alone when nothing else is named).

    Returns:
        The paths of the results and images files.
    """
    out_dir = Path(out_dir)
    images, results, categories = [], [], {}
    for part_path in parts:
        part_path = Path(part_path)
        if not part_path.is_file():
            continue
        part = json.loads(part_path.read_text(encoding="utf-8"))
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": part["file_name"], "height": part["height"], "width": part["width"]})
        for r in part["results"]:
            category_id = categories.setdefault(r["category"], len(categories) + 1)
            results.append({"image_id": image_id, "category_id": category_id,
                            **{k: r[k] for k in ("segmentation", "score", "bbox", "area")}})
    categories = categories or {COCO_CATEGORY: 1}
    paths = out_dir / COCO_RESULTS, out_dir / COCO_IMAGES
    write_json_atomic(paths[0], results, indent=None)
    write_json_atomic(paths[1], {"images": images, "categories": [{"id": i, "name": n} for n, i in categories.items()]})
    return paths


def write_outputs(
    out_dir: str | Path, stem: str, image: np.ndarray, labels: np.ndarray, *, task: str = "instance",
    coco: bool = False, file_name: str | None = None, classes: Mapping[int, str] | None = None,
    scores: Mapping[int, float] | None = None,
) -> dict[str, Path]:
    """Write every output of one image (atomically) and return their paths.

    ``classes`` (instance id -> class name) names the instances' classes where the model gives
    them (GeoJSON ``classification``, COCO category); otherwise every instance is a nucleus.
    ``scores`` (instance id -> score) go into the COCO part (default 1.0).
    """
    paths = output_paths(out_dir, stem, task=task, coco=coco)
    if task == "semantic":
        write_label(paths["classes"], labels)
    else:
        write_label(paths["instances"], labels)
        write_json_atomic(paths["geojson"], to_geojson(labels, classes=classes), indent=None)
        if coco:
            part = coco_part(labels, file_name=file_name or stem, scores=scores, classes=classes)
            write_json_atomic(paths["coco"], part, indent=None)
    write_image(paths["overlay"], overlay(image, labels))
    return paths


def summary_row(stem: str, labels: np.ndarray, seconds: float, *, task: str = "instance") -> dict[str, Any]:
    """One ``summary.csv`` row: instance count and mean area (pixels), seconds spent."""
    if task == "semantic":
        return {"stem": stem, "instances": "", "mean_area": "", "seconds": f"{seconds:.3f}"}
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    sizes = sizes[sizes > 0]
    mean = f"{sizes.mean():.1f}" if sizes.size else "0"
    return {"stem": stem, "instances": int(sizes.size), "mean_area": mean, "seconds": f"{seconds:.3f}"}


def read_summary(path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of an existing ``summary.csv`` by stem (empty when absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["stem"]: row for row in csv.DictReader(f) if "stem" in row}


def write_summary(path: str | Path, rows: dict[str, dict[str, Any]]) -> None:
    """Write ``summary.csv`` atomically, rows sorted by stem."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for stem in sorted(rows):
        writer.writerow(rows[stem])
    write_text_atomic(path, buf.getvalue())
