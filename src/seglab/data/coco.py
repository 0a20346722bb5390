"""COCO instance annotations: JSON (polygons, RLE) to instance maps, and instance maps to COCO.

Polygons are rasterised exactly as the COCO API does (``rleFrPoly`` of the cocoapi's
``maskApi.c``: vertices scaled by 5 and rounded, the outline walked densely, and a pixel filled
when its centre lies below an outline crossing of its column); RLE counts are read in both the
compressed string and the uncompressed list form. Reference: Lin et al., "Microsoft COCO:
Common Objects in Context", ECCV 2014.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.io import PathLike
from seglab.data.rle import counts_to_string, rle_decode
from seglab.errors import DataError, SeglabError

_SCALE = 5.0


def _outline(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer outline (x, y) of a polygon on the 5x grid, edge by edge."""
    pts = np.trunc(_SCALE * xy + 0.5).astype(np.int64)
    pts = np.vstack([pts, pts[:1]])
    us, vs = [], []
    for (xs, ys), (xe, ye) in zip(pts[:-1], pts[1:], strict=True):
        dx, dy = abs(xe - xs), abs(ye - ys)
        major_x = dx >= dy
        flip = (major_x and xs > xe) or (not major_x and ys > ye)
        if flip:
            xs, xe, ys, ye = xe, xs, ye, ys
        n = dx if major_x else dy
        d = np.arange(n + 1)
        t = n - d if flip else d
        if major_x:
            slope = (ye - ys) / dx if dx else 0.0
            us.append(t + xs)
            vs.append(np.trunc(ys + slope * t + 0.5).astype(np.int64))
        else:
            slope = (xe - xs) / dy
            vs.append(t + ys)
            us.append(np.trunc(xs + slope * t + 0.5).astype(np.int64))
    return np.concatenate(us), np.concatenate(vs)


def polygon_to_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rasterise one COCO polygon ``[x0, y0, x1, y1, ...]`` like ``pycocotools.mask.frPyObjects``.

    Returns:
        ``H x W`` boolean mask.
    """
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    u, v = _outline(xy)
    step = u[1:] != u[:-1]
    xd = (np.minimum(u[1:], u[:-1])[step] + 0.5) / _SCALE - 0.5
    yd = (np.minimum(v[1:], v[:-1])[step] + 0.5) / _SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    y = np.ceil(np.clip(yd[keep], 0, height)).astype(np.int64)
    toggles = xd[keep].astype(np.int64) * height + y
    toggles = toggles[toggles < height * width]
    positions, multiplicity = np.unique(toggles, return_counts=True)
    positions = positions[multiplicity % 2 == 1]  # coinciding crossings cancel in pairs
    counts = np.diff(np.concatenate(([0], positions, [height * width])))
    return rle_decode({"size": [height, width], "counts": counts.tolist()})


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Mask of a COCO ``segmentation``: list of polygons (union) or RLE (string or list counts)."""
    if isinstance(segmentation, dict):
        mask = rle_decode(segmentation)
        if mask.shape != (height, width):
            raise SeglabError(f"RLE size {list(mask.shape)} differs from the image size {[height, width]}")
        return mask
    mask = np.zeros((height, width), bool)
    for polygon in segmentation:
        if len(polygon) < 6 or len(polygon) % 2:
            raise SeglabError(f"a COCO polygon needs at least 3 (x, y) pairs, got {len(polygon)} numbers")
        mask |= polygon_to_mask(polygon, height, width)
    return mask


def _load(coco: PathLike | dict) -> tuple[dict, str]:
    if isinstance(coco, dict):
        return coco, "<COCO dict>"
    path = Path(coco)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable COCO JSON ({exc})") from None


def _find_image(data: dict, image: str | int, where: str) -> dict:
    images = data.get("images", [])
    for entry in images:
        if isinstance(image, int) and entry.get("id") == image:
            return entry
        if isinstance(image, str) and image in (entry.get("file_name"), Path(entry.get("file_name", "")).name):
            return entry
    names = ", ".join(str(e.get("file_name")) for e in images[:3])
    raise DataError(where, f"no image {image!r} among its {len(images)} images (e.g. {names})")


def read_coco_instances(
    coco: PathLike | dict, image: str | int, *, include_crowd: bool = True
) -> tuple[np.ndarray, dict[int, int]]:
    """Instance map and classes of one image of a COCO instance file.

    Args:
        coco: path of the JSON file, or the loaded dict.
        image: the image's ``id`` (int) or ``file_name`` (full or base name).
        include_crowd: whether ``iscrowd=1`` regions become instances too.

    Returns:
        ``(instances, classes)``: int32 ``H x W`` map where the image's ``k``-th annotation (in
        file order) has id ``k`` (a later annotation wins where two overlap), and
        ``{instance_id: category_id}``.

    Raises:
        DataError: unreadable file, unknown image, or a bad segmentation (names the annotation).
    """
    data, where = _load(coco)
    entry = _find_image(data, image, where)
    h, w = int(entry["height"]), int(entry["width"])
    inst = np.zeros((h, w), np.int32)
    classes: dict[int, int] = {}
    anns = [a for a in data.get("annotations", []) if a.get("image_id") == entry["id"]]
    for k, ann in enumerate((a for a in anns if include_crowd or not a.get("iscrowd")), start=1):
        try:
            mask = segmentation_to_mask(ann["segmentation"], h, w)
        except (SeglabError, KeyError, TypeError, ValueError) as exc:
            raise DataError(where, f"annotation {ann.get('id')}: bad segmentation ({exc})") from None
        inst[mask] = k
        classes[k] = int(ann.get("category_id", 1))
    return inst, classes


def _runs_by_id(inst: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Column-major runs (starts, lengths) of every non-zero id of a label map."""
    flat = inst.ravel(order="F")
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    values = flat[starts]
    fg = values != 0
    starts, lengths, values = starts[fg], lengths[fg], values[fg]
    order = np.argsort(values, kind="stable")
    ids, first = np.unique(values[order], return_index=True)
    groups = np.split(order, first[1:])
    return {int(i): (starts[g], lengths[g]) for i, g in zip(ids, groups, strict=True)}


def instances_to_coco_annotations(
    inst: np.ndarray, *, image_id: int, classes: dict[int, int] | None = None, first_id: int = 1
) -> list[dict[str, Any]]:
    """COCO annotations (compressed RLE) of every instance of a label map, in increasing id order.

    Args:
        inst: ``H x W`` integer instance map (0 = background).
        image_id: the ``image_id`` of every annotation.
        classes: ``{instance_id: category_id}``; missing ids (or ``None``) get category 1.
        first_id: ``id`` of the first annotation, then counting up.

    Returns:
        Annotations with ``id``, ``image_id``, ``category_id``, ``segmentation`` (``{"size",
        "counts"}``, equal to ``pycocotools.mask.encode`` of the instance), ``area``, ``bbox``
        (``[x, y, w, h]`` as ``pycocotools.mask.toBbox``) and ``iscrowd`` = 0.
    """
    inst = np.asarray(inst)
    h, w = inst.shape
    classes = classes or {}
    anns = []
    for n, (i, (starts, lengths)) in enumerate(sorted(_runs_by_id(inst).items())):
        counts = np.empty(2 * len(starts) + 1, np.int64)
        ends = starts + lengths
        counts[0] = starts[0]
        counts[1::2] = lengths
        counts[2:-1:2] = starts[1:] - ends[:-1]
        counts[-1] = h * w - ends[-1]
        if counts[-1] == 0:  # the instance reaches the last pixel: no closing background run
            counts = counts[:-1]
        rows, cols = starts % h, starts // h
        last_rows, last_cols = (ends - 1) % h, (ends - 1) // h
        spans_columns = cols != last_cols  # a run crossing a column covers every row
        y0 = 0 if spans_columns.any() else int(rows.min())
        y1 = h - 1 if spans_columns.any() else int(last_rows.max())
        x0, x1 = int(cols.min()), int(last_cols.max())
        anns.append({
            "id": first_id + n,
            "image_id": image_id,
            "category_id": int(classes.get(i, 1)),
            "segmentation": {"size": [h, w], "counts": counts_to_string(counts.tolist())},
            "area": int(lengths.sum()),
            "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
            "iscrowd": 0,
        })
    return anns


def instances_to_coco(
    inst: np.ndarray,
    *,
    file_name: str,
    image_id: int = 1,
    classes: dict[int, int] | None = None,
    categories: dict[int, str] | None = None,
) -> dict[str, Any]:
    """A complete COCO instance dict (``images``, ``annotations``, ``categories``) for one image.

    ``categories`` maps category id to name (default ``{1: "nucleus"}`` plus any id used).
    """
    inst = np.asarray(inst)
    anns = instances_to_coco_annotations(inst, image_id=image_id, classes=classes)
    names = {1: "nucleus"} if categories is None else dict(categories)
    for ann in anns:
        names.setdefault(ann["category_id"], f"class_{ann['category_id']}")
    return {
        "images": [{"id": image_id, "file_name": file_name, "height": int(inst.shape[0]), "width": int(inst.shape[1])}],
        "annotations": anns,
        "categories": [{"id": c, "name": n} for c, n in sorted(names.items())],
    }

