"""A prediction as the server returns it: instances JSON, GeoJSON, overlay PNG, label TIFF."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

FORMATS = {"json": "application/json", "geojson": "application/geo+json", "png": "image/png", "tiff": "image/tiff"}
CLASS_NAME = "Nucleus"  # instances of models without instance classes (QuPath's nucleus class)


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


def instances_json(labels: np.ndarray, scores: dict[int, float] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """Per instance: id, class, score, area, centroid ``[x, y]`` and polygon (exterior ring, ``[[x, y], ...]``)."""
    from seglab.inference.writers import instance_features

    features = instance_features(labels)
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


def geojson(labels: np.ndarray, scores: dict[int, float] | None) -> dict[str, Any]:
    from seglab.inference.writers import to_geojson

    out = to_geojson(labels)
    for f in out["features"]:
        f["properties"]["score"] = round(float((scores or {}).get(f["properties"]["id"], 1.0)), 4)
    return out


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
