"""COCO panoptic (Kirillov et al. 2019; panopticapi's format) into the panoptic folder format.

``SRC`` is the panoptic JSON (``images``, ``annotations`` with ``file_name`` and
``segments_info``, ``categories`` with ``id``, ``name``, ``isthing``, ``color``); the PNGs sit in
the folder named like the JSON without ``.json`` (``panoptic_val2017/``), or in ``--png-dir``.
Each PNG encodes the segment id of a pixel as ``R + 256 G + 256^2 B`` (0 = unlabelled).
Images come from ``--images`` (default: ``images/`` beside the JSON).

Classes: the categories in the JSON's order, after a class 0 ``background`` (stuff, holding no
pixel: COCO has none) unless the first category is already a stuff class (as in the files
``seglab predict`` writes, which then convert back unchanged). Unlabelled pixels and ``iscrowd`` segments are void (255), as panopticapi ignores
them; every thing segment becomes one instance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.convert import finish, write_sample
from seglab.data.panoptic import IGNORE, PanopticClass
from seglab.errors import DataError


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG (H x W x 3) -> segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _load(src: Path) -> dict:
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(src, "file not found (the COCO panoptic JSON)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(src, f"invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("annotations", "categories")):
        raise DataError(src, "not a COCO panoptic file (needs annotations and categories)")
    return data


def convert(src: Path, out: Path, images: str | Path | None = None, png_dir: str | Path | None = None) -> dict[str, Any]:
    from seglab.data.io import read_image

    data = _load(src)
    cats = data["categories"]
    if len(cats) + 1 >= IGNORE:
        raise DataError(src, f"{len(cats)} categories; the panoptic folder holds at most {IGNORE - 2}")
    first = 0 if cats and not cats[0].get("isthing", 1) else 1  # class of the first category
    index = {c["id"]: i + first for i, c in enumerate(cats)}
    is_thing = np.array([False] * first + [bool(c.get("isthing", 1)) for c in cats])
    png_dir = Path(png_dir) if png_dir is not None else src.with_suffix("")
    if not png_dir.is_dir():
        png_dir = src.parent  # seglab predict writes the PNG beside its JSON
    image_dir = Path(images) if images is not None else src.parent / "images"
    names = {im["id"]: im["file_name"] for im in data.get("images", [])}
    total = 0
    for ann in data["annotations"]:
        png = png_dir / ann["file_name"]
        ids = rgb_to_id(read_image(png)[..., :3])
        image_name = names.get(ann.get("image_id"), Path(ann["file_name"]).with_suffix(".jpg").name)
        image = read_image(image_dir / image_name)
        if image.shape[:2] != ids.shape:
            raise DataError(png, f"shape {ids.shape} differs from image {image_dir / image_name} {image.shape[:2]}")
        segs = ann.get("segments_info", [])
        top = int(max([ids.max(initial=0)] + [s["id"] for s in segs])) + 1
        seg_class = np.full(top, IGNORE, np.int64)
        seg_inst = np.zeros(top, np.int64)
        for n, s in enumerate(segs, start=1):
            if s["category_id"] not in index:
                raise DataError(src, f"segment {s['id']} of {ann['file_name']}: category {s['category_id']} not in categories")
            c = index[s["category_id"]]
            if not s.get("iscrowd", 0):
                seg_class[s["id"]] = c
                seg_inst[s["id"]] = n if is_thing[c] else 0
        cls, inst = seg_class[ids], seg_inst[ids]
        from seglab.data.targets import relabel_sequential

        write_sample(out, Path(ann["file_name"]).stem, image[..., :3], relabel_sequential(inst), cls)
        total += int(np.count_nonzero(seg_inst))
    classes = [PanopticClass("background", False, (0, 0, 0))] * first + [
        PanopticClass(c["name"], bool(c.get("isthing", 1)), tuple(c.get("color", (128, 128, 128)))) for c in cats]
    finish(out, classes)
    return {"images": len(data["annotations"]), "instances": total, "classes": [c.name for c in classes]}
