"""CoNIC (Graham et al. 2021) and Lizard (Graham et al. 2021) into the panoptic folder format.

* CoNIC patches: ``images.npy`` (N x H x W x 3 uint8) and ``labels.npy`` (N x H x W x 2:
  instance map, class map), searched below ``SRC``;
* Lizard: ``Images/<stem>.png`` and ``Labels/<stem>.mat`` with ``inst_map`` (H x W), ``id``
  (n x 1 instance ids) and ``class`` (n x 1, the class of each id, in ``id``'s order).

Classes: 0 background (stuff), 1 neutrophil, 2 epithelial, 3 lymphocyte, 4 plasma,
5 eosinophil, 6 connective (things), as both releases number them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.convert import finish, write_sample
from seglab.data.panoptic import PanopticClass
from seglab.errors import DataError

TYPES = ("neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective")
COLORS = ((0, 0, 0), (0, 255, 0), (255, 0, 0), (0, 191, 255), (0, 0, 255), (255, 255, 0))


def _classes() -> list[PanopticClass]:
    return [PanopticClass("background", False, (200, 200, 200))] + [
        PanopticClass(n, True, c if c != (0, 0, 0) else (120, 60, 180)) for n, c in zip(TYPES, COLORS, strict=True)]


def _lizard(src: Path, out: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    from seglab.data.io import IMAGE_SUFFIXES, find_file, read_image

    mats = sorted((src / "Labels").glob("*.mat"))
    if not mats:
        raise DataError(src / "Labels", "no Lizard .mat labels found")
    total = 0
    for mat in mats:
        image_path = find_file(src / "Images", mat.stem, IMAGE_SUFFIXES)
        if image_path is None:
            raise DataError(mat, f"no image {mat.stem}.png in {src / 'Images'}")
        try:
            data = loadmat(mat)
            inst = np.asarray(data["inst_map"]).astype(np.int64)
            ids = np.asarray(data["id"]).astype(np.int64).ravel()
            types = np.asarray(data["class"]).astype(np.int64).ravel()
        except KeyError as exc:
            raise DataError(mat, f"Lizard label lacks {exc.args[0]!r} (needs inst_map, id, class)") from None
        except Exception as exc:
            raise DataError(mat, f"unreadable .mat ({type(exc).__name__})") from None
        if len(ids) != len(types):
            raise DataError(mat, f"{len(ids)} ids but {len(types)} classes")
        lut = np.zeros(int(max(inst.max(initial=0), ids.max(initial=0))) + 1, np.int64)
        lut[ids] = types
        cls = lut[inst]
        if ((inst > 0) & (cls == 0)).any():
            raise DataError(mat, f"instance {int(inst[(inst > 0) & (cls == 0)][0])} is not listed in id/class")
        image = read_image(image_path)[..., :3]
        if image.shape[:2] != inst.shape:
            raise DataError(mat, f"inst_map shape {inst.shape} differs from image {image_path} {image.shape[:2]}")
        write_sample(out, mat.stem, image, inst, cls)
        total += len(np.unique(inst[inst > 0]))
    finish(out, _classes())
    return {"images": len(mats), "instances": total, "classes": [c.name for c in _classes()]}


def convert(src: Path, out: Path) -> dict[str, Any]:
    if (src / "Labels").is_dir():
        return _lizard(src, out)
    found = {name: sorted(src.rglob(name)) if src.is_dir() else [] for name in ("images.npy", "labels.npy")}
    if any(len(v) != 1 for v in found.values()):
        raise DataError(src, "expected one images.npy and one labels.npy (CoNIC) or Images/ + Labels/*.mat (Lizard) below it")
    images = np.load(found["images.npy"][0], mmap_mode="r")
    labels = np.load(found["labels.npy"][0], mmap_mode="r")
    if labels.ndim != 4 or labels.shape[-1] != 2 or labels.shape[:3] != images.shape[:3]:
        raise DataError(found["labels.npy"][0], f"expected N x H x W x 2 matching images {images.shape[:3]}, got {labels.shape}")
    if int(labels[..., 1].max(initial=0)) > len(TYPES):
        raise DataError(found["labels.npy"][0], f"class {int(labels[..., 1].max())} beyond the {len(TYPES)} CoNIC types")
    total = 0
    for i in range(len(images)):
        inst, cls = (np.asarray(labels[i, ..., c]).astype(np.int64) for c in (0, 1))
        write_sample(out, f"conic_{i:05d}", np.asarray(images[i]), inst, cls)
        total += len(np.unique(inst[inst > 0]))
    finish(out, _classes())
    return {"images": len(images), "instances": total, "classes": [c.name for c in _classes()]}
