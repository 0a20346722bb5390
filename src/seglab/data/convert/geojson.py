"""QuPath GeoJSON exports (File > Export objects as GeoJSON) into the panoptic folder format.

``SRC`` holds ``images/<stem>.*`` and ``<stem>.geojson`` (in ``SRC``, ``SRC/annotations`` or
``SRC/geojson``). Every ``Polygon`` / ``MultiPolygon`` feature (holes cut out; for QuPath cell
objects, their ``nucleusGeometry``) is drawn in
level-0 pixels, QuPath's convention (pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``);
its class is ``properties.classification.name`` (``Unclassified`` without one) and its colour
``classification.color``. Classes named in ``stuff`` (``--stuff stroma,epithelium``) are tissue
regions, drawn first, largest first; every other class is a thing: each feature one instance,
drawn over the regions (a later feature wins where two overlap).

Classes: 0 ``background`` (stuff), then the stuff classes, then the thing classes, each sorted by
name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.convert import finish, write_sample
from seglab.data.panoptic import PanopticClass
from seglab.errors import DataError

UNCLASSIFIED = "Unclassified"


def _features(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc})") from None
    feats = data.get("features") if isinstance(data, dict) and data.get("type") == "FeatureCollection" else data
    if isinstance(feats, dict) and feats.get("type") == "Feature":
        feats = [feats]
    if not isinstance(feats, list):
        raise DataError(path, "not GeoJSON (expected a FeatureCollection or a list of Features)")
    out = []
    for f in feats:
        if not isinstance(f, dict):
            continue
        nucleus = (f.get("properties") or {}).get("nucleusGeometry") or f.get("nucleusGeometry")
        if isinstance(nucleus, dict):  # a QuPath cell: its nucleus is the object to segment
            f = {**f, "geometry": nucleus}
        if (f.get("geometry") or {}).get("type") in ("Polygon", "MultiPolygon"):
            out.append(f)
    return out


def _classification(feature: dict) -> tuple[str, tuple[int, int, int] | None]:
    c = (feature.get("properties") or {}).get("classification") or {}
    color = c.get("color") or c.get("colorRGB")
    if isinstance(color, int):  # QuPath's packed ARGB integer
        color = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    return str(c.get("name") or UNCLASSIFIED), tuple(color[:3]) if isinstance(color, list | tuple) else None


def _rasterise(geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon

    mask = np.zeros(shape, bool)
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for rings in polys:
        for k, ring in enumerate(rings):
            xy = np.asarray(ring, float)
            rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape)  # pixel centres inside the ring
            mask[rr, cc] = k == 0  # exterior sets, holes clear
    return mask


def _find_geojson(src: Path, stem: str) -> Path | None:
    for folder in (src, src / "annotations", src / "geojson"):
        for suffix in (".geojson", ".json"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def convert(src: Path, out: Path, stuff: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    from seglab.data.dataset import find_samples
    from seglab.data.io import read_image

    samples = find_samples(src, require_labels=False)
    pairs = [(s, _find_geojson(src, s.stem)) for s in samples]
    missing = [s for s, g in pairs if g is None]
    if missing:
        raise DataError(src / f"{missing[0].stem}.geojson", f"missing GeoJSON for image {missing[0].image}")
    loaded = [(s, g, _features(g)) for s, g in pairs]
    colors: dict[str, tuple[int, int, int] | None] = {}
    for _, _, feats in loaded:
        for f in feats:
            name, color = _classification(f)
            colors[name] = colors.get(name) or color
    stuff_names = sorted(n for n in colors if n in set(stuff))
    thing_names = sorted(n for n in colors if n not in set(stuff))
    if not thing_names:
        raise DataError(src, "no thing class: every classification was given as --stuff")
    classes = [PanopticClass("background", False, (200, 200, 200))]
    from seglab.data.panoptic import PALETTE

    for i, name in enumerate(stuff_names + thing_names):
        classes.append(PanopticClass(name, name not in stuff_names, colors[name] or PALETTE[i % len(PALETTE)]))
    index = {c.name: i for i, c in enumerate(classes)}
    total = 0
    for sample, _path, feats in loaded:
        image = read_image(sample.image)
        shape = image.shape[:2]
        inst, cls = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        regions = [(f, _rasterise(f["geometry"], shape)) for f in feats if _classification(f)[0] in stuff_names]
        for f, mask in sorted(regions, key=lambda fm: -int(fm[1].sum())):
            cls[mask & (inst == 0)] = index[_classification(f)[0]]
        n = 0
        for f in feats:
            name = _classification(f)[0]
            if name in stuff_names:
                continue
            mask = _rasterise(f["geometry"], shape)
            if mask.any():
                n += 1
                inst[mask], cls[mask] = n, index[name]
        from seglab.data.targets import relabel_sequential

        inst = relabel_sequential(inst)  # instances hidden entirely by later ones vanish
        write_sample(out, sample.stem, image[..., :3] if image.shape[-1] >= 3 else image, inst, cls)
        total += int(inst.max())
    finish(out, classes)
    return {"images": len(samples), "instances": total, "classes": [c.name for c in classes]}
