"""Converters from published nucleus / panoptic formats into the panoptic folder format.

``seglab data convert --from FORMAT SRC --out DIR`` (:func:`convert`); one module per format:

=================  ==========================================================================
``pannuke``        PanNuke folds: ``images.npy`` (N x 256 x 256 x 3) and ``masks.npy``
                   (N x 256 x 256 x 6: one instance map per type, the last channel background)
``conic``          CoNIC: ``images.npy`` + ``labels.npy`` (N x H x W x 2: instance, class), or
                   Lizard: ``Images/<stem>.png`` + ``Labels/<stem>.mat`` (``inst_map``, ``id``, ``class``)
``coco-panoptic``  COCO panoptic: the JSON (``annotations``, ``categories``) and its PNG folder
                   (RGB-encoded segment ids ``R + 256 G + 256^2 B``); images from ``--images``
``geojson``        QuPath GeoJSON exports: ``<stem>.geojson`` beside ``images/<stem>.*``; each
                   feature's ``classification.name`` is its class
=================  ==========================================================================

Every output file is written atomically; the class list goes to ``DIR/classes.yaml``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.panoptic import PanopticClass, write_classes
from seglab.errors import unknown_choice

FORMATS = {
    "pannuke": "seglab.data.convert.pannuke",
    "conic": "seglab.data.convert.conic",
    "coco-panoptic": "seglab.data.convert.coco_panoptic",
    "geojson": "seglab.data.convert.geojson",
}


def write_sample(out: Path, stem: str, image: np.ndarray, inst: np.ndarray, cls: np.ndarray) -> None:
    """Write ``images/<stem>.png``, ``labels/<stem>.tif`` and ``classes/<stem>.png``."""
    from seglab.data.io import write_image, write_label

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    write_image(out / "images" / f"{stem}.png", image)
    write_label(out / "labels" / f"{stem}.tif", np.asarray(inst, np.int64))
    write_label(out / "classes" / f"{stem}.png", np.asarray(cls, np.int64))


def finish(out: Path, classes: list[PanopticClass]) -> None:
    """Write the class list (after the samples, so a folder with classes.yaml is complete)."""
    write_classes(out, classes)


def convert(fmt: str, src: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """Convert ``src`` (format ``fmt``) into the panoptic folder ``out``.

    Returns:
        ``{"images": n, "instances": n, "classes": [names]}``.

    Raises:
        ConfigError: unknown format. DataError: ``src`` not in the format's layout (one line
            naming the file).
    """
    if fmt not in FORMATS:
        raise unknown_choice("source format", fmt, FORMATS)
    module = importlib.import_module(FORMATS[fmt])
    return module.convert(Path(src), Path(out), **options)
