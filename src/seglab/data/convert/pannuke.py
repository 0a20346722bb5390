"""PanNuke folds (Gamper et al. 2019/2020) into the panoptic folder format.

A fold folder holds ``images.npy`` (N x 256 x 256 x 3, float 0-255 in the release) and
``masks.npy`` (N x 256 x 256 x 6): channels 0-4 are instance maps of the types neoplastic,
inflammatory, connective, dead and epithelial, channel 5 is background. The release nests them
(``Fold 1/images/fold1/images.npy``), so both are searched below ``SRC``; ``types.npy`` (tissue
per image), when present, goes into the stems (``<tissue>_<index>``).

Classes: 0 background (stuff), 1-5 the types above (things). An instance's pixels can sit in two
type channels (rare annotation overlap); the later channel wins, as in PanNuke's own
``binarize``. Ids are renumbered per image so that the five channels never share one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.convert import finish, write_sample
from seglab.data.panoptic import PanopticClass
from seglab.errors import DataError

TYPES = ("neoplastic", "inflammatory", "connective", "dead", "epithelial")
COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 165, 0))


def _find(src: Path, name: str) -> Path:
    found = [src] if src.name == name else sorted(src.rglob(name))
    if len(found) != 1:
        raise DataError(src, f"expected one {name} below it (a PanNuke fold), found {len(found)}")
    return found[0]


def panoptic_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``H x W x 6`` masks -> (instances 1..n, classes 0..5)."""
    inst = np.zeros(masks.shape[:2], np.int64)
    cls = np.zeros(masks.shape[:2], np.int64)
    offset = 0
    for t in range(len(TYPES)):
        ch = masks[..., t].astype(np.int64)
        ids, dense = np.unique(ch, return_inverse=True)
        dense = dense.reshape(ch.shape) + offset - (1 if ids[0] == 0 else 0)
        on = ch > 0
        inst[on], cls[on] = dense[on] + 1, t + 1
        offset += int(np.count_nonzero(ids))
    from seglab.data.targets import relabel_sequential

    return relabel_sequential(inst).astype(np.int64), cls


def convert(src: Path, out: Path) -> dict[str, Any]:
    images = np.load(_find(src, "images.npy"), mmap_mode="r")
    masks_path = _find(src, "masks.npy")
    masks = np.load(masks_path, mmap_mode="r")
    if masks.ndim != 4 or masks.shape[-1] != 6 or images.shape[:3] != masks.shape[:3] or images.shape[-1] != 3:
        raise DataError(masks_path, f"expected images N x H x W x 3 and masks N x H x W x 6, got {images.shape} and {masks.shape}")
    types_path = next(iter(sorted(src.rglob("types.npy"))), None) if src.is_dir() else None
    tissues = np.load(types_path) if types_path is not None else None
    if tissues is not None and len(tissues) != len(images):
        raise DataError(types_path, f"{len(tissues)} tissue types for {len(images)} images")
    total = 0
    for i in range(len(images)):
        inst, cls = panoptic_from_masks(np.asarray(masks[i]))
        stem = f"{str(tissues[i]).replace(' ', '_')}_{i:05d}" if tissues is not None else f"pannuke_{i:05d}"
        write_sample(out, stem, np.asarray(images[i]), inst, cls)
        total += int(inst.max())
    classes = [PanopticClass("background", False, (200, 200, 200))]
    classes += [PanopticClass(n, True, c) for n, c in zip(TYPES, COLORS, strict=True)]
    finish(out, classes)
    return {"images": len(images), "instances": total, "classes": [c.name for c in classes]}
