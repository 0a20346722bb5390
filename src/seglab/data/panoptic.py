"""The panoptic folder format: thing instances, a class for every pixel, and the class list.

Layout::

    DIR/images/<stem>.(png|jpg|tif)     the image
    DIR/labels/<stem>.tif               instance ids of the things, 0 = none
    DIR/classes/<stem>.(png|tif)        a class index for every pixel (255 = ignore); the pixels of
                                        a thing carry its class
    DIR/classes.yaml                    the class list

``classes.yaml`` is a list (or ``{classes: [...]}``) of entries ``{name, thing, color}``; the
index of an entry is its class id, ``color`` (``[r, g, b]`` or ``"#rrggbb"``) is optional, and
class 0 is the background stuff class::

    - {name: background, thing: false}
    - {name: stroma, thing: false, color: [240, 170, 200]}
    - {name: tumour, thing: true, color: "#e41a1c"}

Reading a pair (:func:`read_panoptic`): an instance whose pixels disagree on the class takes the
majority among its thing-class pixels (``seglab data check --task panoptic`` reports such
instances); thing-class pixels outside every instance are void (255). A class id missing from
``classes.yaml`` or an instance without any thing-class pixel is a one-line :class:`DataError`.

For training, instance and class maps travel as one int64 map ``instance * 256 + class``
(:func:`encode` / :func:`decode`), so joint geometric augmentation moves both with one
nearest-neighbour resampling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seglab.data.io import LABEL_SUFFIXES, find_file, read_label
from seglab.errors import DataError

CLASSES_FILE = "classes.yaml"
CLASS_DIR = "classes"
IGNORE = 255
CODE = 256  # instance * CODE + class
PALETTE = ((228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40),
           (247, 129, 191), (0, 170, 170), (153, 153, 153), (255, 255, 51))


@dataclass(frozen=True)
class PanopticClass:
    """One entry of ``classes.yaml``."""

    name: str
    thing: bool
    color: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {"name": self.name, "thing": self.thing, "color": list(self.color)}


def _color(path: Path, index: int, value: object) -> tuple[int, int, int]:
    if value is None:
        return (200, 200, 200) if index == 0 else PALETTE[(index - 1) % len(PALETTE)]
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    if isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise DataError(path, f"class {index}: color must be [r, g, b] (0-255) or '#rrggbb', got {value!r}")


def parse_classes(entries: object, path: Path) -> list[PanopticClass]:
    """Validate the class list of ``classes.yaml`` (see the module docstring)."""
    if isinstance(entries, dict) and "classes" in entries:
        entries = entries["classes"]
    if not isinstance(entries, list) or len(entries) < 2:
        raise DataError(path, "must list at least two classes ({name, thing, color}), class 0 the background")
    if len(entries) > IGNORE:
        raise DataError(path, f"at most {IGNORE} classes (255 is ignore), got {len(entries)}")
    classes, names = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("thing"), bool):
            raise DataError(path, f"class {i}: expected {{name: <text>, thing: true|false, color: optional}}, got {e!r}")
        extra = set(e) - {"name", "thing", "color"}
        if extra:
            raise DataError(path, f"class {i}: unknown key {sorted(extra)[0]!r} (keys: name, thing, color)")
        if e["name"] in names:
            raise DataError(path, f"class {i}: name {e['name']!r} used twice")
        names.add(e["name"])
        classes.append(PanopticClass(e["name"], e["thing"], _color(path, i, e.get("color"))))
    if classes[0].thing:
        raise DataError(path, f"class 0 ({classes[0].name!r}) must be the background stuff class (thing: false)")
    if not any(c.thing for c in classes):
        raise DataError(path, "no thing class (thing: true): panoptic data needs countable objects")
    return classes


def read_classes(root: str | Path) -> list[PanopticClass]:
    """``root/classes.yaml`` as a validated class list."""
    from seglab.config import load_yaml

    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        raise DataError(path, "file not found (the panoptic format lists its classes there)")
    import yaml

    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        load_yaml(path)  # raises the one-line error with the line number
        raise
    return parse_classes(entries, path)


def write_classes(root: str | Path, classes: list[PanopticClass]) -> None:
    """Write ``root/classes.yaml`` atomically."""
    import yaml

    from seglab.fileio import write_text_atomic

    text = yaml.safe_dump([c.to_dict() for c in classes], sort_keys=False, default_flow_style=None)
    write_text_atomic(Path(root) / CLASSES_FILE, text)


@functools.lru_cache(maxsize=16)
def _cached_classes(root: str) -> tuple[PanopticClass, ...]:
    return tuple(read_classes(root))


def same_classes(a: str | Path, b: str | Path) -> list[PanopticClass]:
    """The classes of two folders (train and val), which must agree in names and kinds."""
    ca, cb = read_classes(a), read_classes(b)
    if [(c.name, c.thing) for c in ca] != [(c.name, c.thing) for c in cb]:
        first = next((i for i, (x, y) in enumerate(zip(ca, cb, strict=False)) if (x.name, x.thing) != (y.name, y.thing)),
                     min(len(ca), len(cb)))
        raise DataError(Path(b) / CLASSES_FILE, f"disagrees with {Path(a) / CLASSES_FILE} at class {first} "
                                                f"({len(cb)} classes vs {len(ca)})")
    return ca


def class_map_path(label_path: str | Path) -> Path | None:
    """``DIR/classes/<stem>.(png|tif)`` beside ``DIR/labels/<stem>.tif``."""
    label_path = Path(label_path)
    return find_file(label_path.parent.parent / CLASS_DIR, label_path.stem, (".png", *LABEL_SUFFIXES))


def instance_votes(inst: np.ndarray, cls: np.ndarray, is_thing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per instance id, the pixel count of every class: ``(ids, counts K)`` (thing classes only)."""
    k = len(is_thing)
    sel = (inst > 0) & (cls < k)
    sel &= is_thing[np.minimum(cls, k - 1)]
    ids, index = np.unique(inst[sel], return_inverse=True)
    counts = np.bincount(index * k + cls[sel], minlength=len(ids) * k).reshape(len(ids), k)
    return ids, counts


def resolve(inst: np.ndarray, cls: np.ndarray, classes: list[PanopticClass] | tuple[PanopticClass, ...],
            path: Path | str = "<class map>") -> tuple[np.ndarray, dict]:
    """Class map in which every instance carries its majority class (see the module docstring).

    Returns:
        ``(classes H x W int64, info)``; ``info``: ``disagreeing`` (ids of instances whose pixels
        disagree), ``no_class`` (ids without a thing-class pixel), ``stray`` (thing-class pixels
        outside every instance, made void).

    Raises:
        DataError: a class id not in ``classes.yaml``.
    """
    k = len(classes)
    bad = (cls >= k) & (cls != IGNORE)
    if bad.any():
        raise DataError(path, f"class id {int(cls[bad].flat[0])} is missing from {CLASSES_FILE} ({k} classes: 0..{k - 1})")
    is_thing = np.array([c.thing for c in classes])
    ids, counts = instance_votes(inst, cls, is_thing)
    all_ids, sizes = np.unique(inst[inst > 0], return_counts=True)
    no_class = np.setdiff1d(all_ids, ids)
    winner = counts.argmax(1)
    disagreeing = ids[counts[np.arange(len(ids)), winner] < sizes[np.searchsorted(all_ids, ids)]]
    lut = np.full(int(inst.max(initial=0)) + 1, IGNORE, np.int64)
    lut[ids] = winner
    out = np.where(inst > 0, lut[inst], cls).astype(np.int64)
    stray = (inst == 0) & (cls < k) & is_thing[np.minimum(cls, k - 1)]
    out[stray] = IGNORE
    return out, {"disagreeing": disagreeing, "no_class": no_class, "stray": int(stray.sum())}


def read_panoptic(label_path: str | Path, classes: list[PanopticClass] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``labels/<stem>.tif`` and its class map: ``(instances, classes)`` int64, resolved.

    Raises:
        DataError: missing class map, size mismatch, a class id missing from ``classes.yaml``, or
            an instance without class.
    """
    label_path = Path(label_path)
    root = label_path.parent.parent
    classes = list(classes) if classes is not None else list(_cached_classes(str(root)))
    class_path = class_map_path(label_path)
    if class_path is None:
        raise DataError(root / CLASS_DIR / f"{label_path.stem}.png", f"missing class map for {label_path}")
    inst, cls = read_label(label_path), read_label(class_path)
    if inst.shape != cls.shape:
        raise DataError(class_path, f"class map shape {cls.shape} differs from instance map {label_path} {inst.shape}")
    resolved, info = resolve(inst, cls, classes, class_path)
    if len(info["no_class"]):
        raise DataError(class_path, f"instance {int(info['no_class'][0])} of {label_path.name} has no thing class "
                                    f"({len(info['no_class'])} such instances)")
    return inst, resolved


def encode(inst: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """One int64 map ``instance * 256 + class``."""
    return inst.astype(np.int64) * CODE + cls


def decode(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode` (negative padding sentinels stay negative in both)."""
    code = np.asarray(code)
    neg = code < 0
    inst, cls = np.divmod(np.where(neg, 0, code), CODE)
    return np.where(neg, code, inst), np.where(neg, code, cls)


def read_encoded(label_path: str | Path) -> np.ndarray:
    """:func:`read_panoptic` as one :func:`encode`d map (what the training data set reads)."""
    return encode(*read_panoptic(label_path))


def class_pixel_counts(label_paths: list[Path], num_classes: int, limit: int = 64) -> np.ndarray:
    """Pixels per class over (at most ``limit``, evenly spread) resolved class maps."""
    step = max(1, len(label_paths) // limit)
    total = np.zeros(num_classes, np.int64)
    for path in label_paths[::step]:
        cls = read_panoptic(path)[1]
        total += np.bincount(cls[cls < num_classes], minlength=num_classes)
    return total
