"""A prediction as the server returns it: instances JSON, GeoJSON, overlay PNG, label TIFF."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMATS = {"json": "application/json", "geojson": "application/geo+json", "png": "image/png", "tiff": "image/tiff"}
CLASS_NAME = "Nucleus"  # instances of models without instance classes (QuPath's nucleus class)


@dataclass
class Prediction:
    """One image's result: ``labels`` (``H x W`` instance ids or classes), ``scores`` (instance id ->
    score), and for typed instances ``classes`` (instance id -> class name) and ``colors`` (class
    name -> RGB)."""

    labels: np.ndarray
    scores: dict[int, float] | None = None
    classes: dict[int, str] | None = None
    colors: dict[str, Any] | None = None


def choose_format(query: str | None, accept: str | None) -> str:
    """``?format=`` first, else the first ``Accept`` type we serve, else JSON."""
    from seglab.serve.limits import HTTPProblem

    if query:
        if query not in FORMATS:
            raise HTTPProblem(400, f"unknown format {query!r}; valid: {', '.join(FORMATS)}")
        return query
    for part in (accept or "").split(","):
        mime = part.split(";")[0].strip().lower()
        for name, served in FORMATS.items():
            if mime == served:
                return name
    return "json"


def instance_features(result: Prediction) -> list[dict[str, Any]]:
    """GeoJSON features of the instances, with their class where the model gives one."""
    from seglab.inference.writers import instance_features as features

    return features(result.labels, classes=result.classes, colors=result.colors)


def instances_json(result: Prediction, meta: dict[str, Any]) -> dict[str, Any]:
    """Per instance: id, class, score, area, centroid ``[x, y]`` and polygon (exterior ring, ``[[x, y], ...]``)."""
    labels, scores = result.labels, result.scores
    features = instance_features(result)
    instances = []
    counts: dict[str, int] = {}
    for f in features:
        props, geom = f["properties"], f["geometry"]
        ring = geom["coordinates"][0] if geom["type"] == "Polygon" else geom["coordinates"][0][0]
        name = props["classification"]["name"]
        counts[name] = counts.get(name, 0) + 1
        instances.append({
            "id": props["id"], "class": name, "color": props["classification"]["color"],
            "score": round(float((scores or {}).get(props["id"], 1.0)), 4),
            "area": props["area"], "centroid": props["centroid"], "polygon": ring,
        })
    return {"width": int(labels.shape[1]), "height": int(labels.shape[0]), "count": len(instances),
            "counts": counts, "mpp": meta.get("mpp"), "instances": instances}


def geojson(result: Prediction) -> dict[str, Any]:
    features = instance_features(result)
    for f in features:
        f["properties"]["score"] = round(float((result.scores or {}).get(f["properties"]["id"], 1.0)), 4)
    return {"type": "FeatureCollection", "features": features}


def overlay_png(image: np.ndarray, labels: np.ndarray) -> bytes:
    from PIL import Image

    from seglab.inference.writers import overlay

    buf = io.BytesIO()
    Image.fromarray(overlay(image, labels)).save(buf, format="PNG")
    return buf.getvalue()


def label_tiff(labels: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    return buf.getvalue()
