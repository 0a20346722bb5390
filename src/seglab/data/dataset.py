"""Folder data set: lazy reading, random patches, joint augmentation, targets on the fly.

Layout: ``root/images/<stem>.(png|jpg|jpeg|tif|tiff)`` and ``root/labels/<stem>.(tif|tiff|png)``
(or MoNuSeg ``<stem>.xml`` in ``root/labels`` or ``root/annotations``). Files are read in
``__getitem__`` only, so folders of thousands of tiles never sit in memory; uncompressed TIFFs
are memory-mapped and only the patch is read. Each process keeps the last image it decoded, so
a data set of one large image with many patches per image decodes it once per worker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seglab.data.io import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    Sample,
    find_file,
    read_image,
    read_label,
)
from seglab.data.normalize import IntensityScaling
from seglab.data.targets import IGNORE_INDEX, distance_targets, foreground, three_class_targets
from seglab.errors import DataError, SeglabError, unknown_choice

TASKS = ("instance", "semantic", "panoptic")
TARGETS = {"instance": ("three_class", "foreground", "distance", "semantic"), "semantic": ("semantic", "foreground"),
           "panoptic": ("three_class", "foreground", "distance", "classes")}  # classes: seglab.data.panoptic
_LABEL_DIRS = ("labels", "annotations")
_PAD = -1  # sentinel id of padded label pixels and of those a transform exposes (transforms.MASK_FILL)
_FG_PER_IMAGE = 10_000  # foreground positions kept per image (a uniform random subset) to centre patches on
_FG_CACHED = 2_000_000  # positions cached per process over all images (16 MB); the least recently used go first
_FG_BAND = 1 << 22  # label pixels scanned at a time when finding an image's foreground


def find_samples(root: Path, *, require_labels: bool = True) -> list[Sample]:
    """List the image/label pairs of a folder data set, sorted by stem.

    Raises:
        DataError: no ``images`` folder or no image in it, two images with one stem, or (with
            ``require_labels``) an image without a label; the message names the path.
    """
    root = Path(root)
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DataError(image_dir, "folder not found (expected DIR/images/<stem>.png|jpg|tif)")
    images = sorted(
        p for p in image_dir.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not images:
        raise DataError(image_dir, "no images found (.png, .jpg, .jpeg, .tif, .tiff)")
    samples, seen = [], {}
    for image in images:
        if image.stem in seen:
            raise DataError(image, f"two images with stem {image.stem!r} (also {seen[image.stem]})")
        seen[image.stem] = image
        label = _find_label(root, image.stem)
        if label is None and require_labels:
            raise DataError(root / "labels" / f"{image.stem}.tif", f"missing label for image {image}")
        samples.append(Sample(image.stem, image, label))
    return samples


def read_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample whole: image ``H x W x C`` (stored dtype) and int64 label ``H x W``.

    Raises:
        DataError: unreadable file, invalid label map, or a label whose size differs from the
            image's (the message names the label file).
    """
    image = read_image(sample.image)
    if sample.label is None:
        raise DataError(sample.image, "image has no label")
    if sample.label.suffix.lower() == ".xml":
        from seglab.data.monuseg import read_monuseg_xml

        label = read_monuseg_xml(sample.label, image.shape[:2])
    else:
        label = read_label(sample.label)
    if tuple(label.shape) != tuple(image.shape[:2]):
        raise DataError(
            sample.label,
            f"label shape {tuple(label.shape)} differs from image {sample.image} shape {tuple(image.shape[:2])}",
        )
    return image, label.astype(np.int64, copy=False)


def _find_label(root: Path, stem: str) -> Path | None:
    for name in _LABEL_DIRS:
        found = find_file(root / name, stem, (*LABEL_SUFFIXES, ".xml"))
        if found is not None:
            return found
    return None


def _orient(arr: Any, label: bool) -> Any:
    """Apply :func:`seglab.data.io.read_image` / ``read_label`` axis rules to a memory map."""
    if label:
        return arr.reshape(arr.shape[-2:]) if arr.ndim > 2 and np.prod(arr.shape[:-2]) == 1 else arr
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim == 3 and arr.shape[0] <= 4 and arr.shape[-1] > 4:
        return np.moveaxis(arr, 0, -1)
    return arr


def _memmap(path: Path, label: bool) -> Any | None:
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        arr = _orient(tifffile.memmap(path, mode="r"), label)
    except Exception:  # compressed, tiled or otherwise not mappable: read it whole
        return None
    ok = arr.ndim == 2 if label else (arr.ndim == 3 and 1 <= arr.shape[-1] <= 4 and arr.dtype != bool)
    return arr if ok else None


def _check_label_crop(path: Path, crop: np.ndarray) -> np.ndarray:
    if crop.dtype.kind == "f" and (not np.all(np.isfinite(crop)) or np.any(crop != np.round(crop))):
        raise DataError(path, "label map holds non-integer values")
    if crop.size and crop.min() < 0:
        raise DataError(path, "label map holds negative values")
    return crop.astype(np.int64)


def _pad(arr: np.ndarray, size: int, mode: str, value: int = 0) -> np.ndarray:
    widths = [(0, max(0, size - arr.shape[0])), (0, max(0, size - arr.shape[1]))] + [(0, 0)] * (arr.ndim - 2)
    if not any(w for _, w in widths):
        return arr
    if mode == "reflect" and min(arr.shape[:2]) > 1:
        return np.pad(arr, widths, mode="reflect")
    return np.pad(arr, widths, mode="constant", constant_values=value)


def foreground_positions(label: Any, task: str, rng: np.random.Generator, limit: int = _FG_PER_IMAGE) -> list[np.ndarray]:
    """Where a foreground-centred patch may be centred: per foreground class, ``K x 2`` int32
    (row, col) positions, a uniform random subset of that class's pixels (at most ``limit`` in all).

    Classes: instance task one (every pixel of an instance, ``label > 0``); semantic task each
    class index but 0 (background) and 255 (ignore). The label (an array or a memory map) is read
    in bands of rows, so a large memory-mapped label never sits in memory whole: each pixel gets
    a random key and each class keeps its pixels of smallest key (without replacement, whatever
    the band size).
    """
    h, w = label.shape[:2]
    rows = max(1, _FG_BAND // max(w, 1))
    kept: dict[Any, tuple[np.ndarray, np.ndarray]] = {}  # class -> (keys, positions)
    for top in range(0, h, rows):
        band = np.asarray(label[top : top + rows])
        mask = band > 0 if task == "instance" else (band != 0) & (band != IGNORE_INDEX)
        r, c = np.nonzero(mask)
        classes = np.ones(len(r), np.int64) if task == "instance" else band[r, c]
        keys = rng.random(len(r))
        for cls in np.unique(classes):
            sel = classes == cls
            pos = np.stack([r[sel] + top, c[sel]], axis=1).astype(np.int32)
            old_keys, old_pos = kept.get(cls, (np.empty(0), np.empty((0, 2), np.int32)))
            all_keys, all_pos = np.concatenate([old_keys, keys[sel]]), np.concatenate([old_pos, pos])
            if len(all_keys) > limit:
                best = np.argpartition(all_keys, limit)[:limit]
                all_keys, all_pos = all_keys[best], all_pos[best]
            kept[cls] = (all_keys, all_pos)
    share = max(1, limit // max(len(kept), 1))
    return [pos[np.argsort(keys)[:share]] for _, (keys, pos) in sorted(kept.items())]


def _extend_into(label: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Copy into the padded pixels the label of the nearest unpadded pixel."""
    if padded.all():
        return np.zeros_like(label)
    from scipy import ndimage

    rows, cols = ndimage.distance_transform_edt(padded, return_distances=False, return_indices=True)
    return label[rows, cols]


class SegmentationDataset(torch.utils.data.Dataset):
    """Random patches (or whole images) with their targets, read lazily from a folder data set.

    Args:
        samples: from :func:`find_samples` (labels required).
        task: ``"instance"`` (labels are instance ids) or ``"semantic"`` (class indices, 255 ignore).
        targets: names of the targets to return: instance task ``"three_class"``,
            ``"foreground"``, ``"distance"``, ``"semantic"`` (= foreground classes); semantic
            task ``"semantic"``, ``"foreground"``.
        patch_size: side of the random square patch; ``None`` returns whole images. Images
            smaller than the patch are padded (image by reflection, labels with background and
            the class targets with 255 = ignore in the padded area).
        patches_per_image: patches drawn per image and epoch; ``len = len(samples) * this``.
        transform: joint ``(image, label) -> (image, label)``, e.g. ``build_transforms(...)``.
        intensity: how stored values become [0, 1]
            (:class:`seglab.data.normalize.IntensityScaling`: the data set's or each whole
            image's percentiles); ``None`` divides by the dtype's maximum.
        seed: mixed with one draw from torch's global generator per item to place the patch,
            so runs repeat under ``torch.manual_seed`` and DataLoader workers (which torch
            seeds differently) draw different patches.
        foreground_sampling: share of patches centred on a foreground pixel instead of placed
            uniformly (the class imbalance remedy of nnU-Net, which centres 1/3 of its patches on
            foreground). The pixel: instance task, any pixel of an instance; semantic task, a
            class drawn uniformly among the image's foreground classes, then one of its pixels
            (each pixel weighted by 1 / its class's pixel count, so a rare class is centred on as
            often as a common one). Positions come from :func:`foreground_positions`, found once
            per image and cached per process; an image without foreground gets uniform patches.
            0 (default) draws no extra random number: patches are as before.

    An item may also be asked for as ``dataset[(index, epoch)]`` (what
    :class:`seglab.engine.datamodule.EpochSampler` yields): its patch and augmentation are then
    drawn from a generator seeded by ``(seed, epoch, index)`` alone, and torch's global generator
    is left as it was, so an epoch's items do not depend on what ran before (a resumed run sees
    the data an uninterrupted one would) nor on the DataLoader workers.

    Items are dicts: ``"image"`` float32 ``C x P x P`` in [0, 1]; ``"instances"`` int64
    ``P x P`` (instance task) or ``"semantic"`` int64 with 255 = ignore (semantic task); one
    entry per target (``"three_class"``, ``"foreground"``, ``"semantic"`` int64 with 255 =
    ignore; ``"distance"`` float32); ``"stem"`` str. All channels are kept (a 4-channel image
    trains a 4-channel model; the predictor drops alpha only for a 3-channel model).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        task: str = "instance",
        targets: tuple[str, ...] = ("three_class",),
        patch_size: int | None = 256,
        patches_per_image: int = 1,
        transform: Callable | None = None,
        intensity: IntensityScaling | None = None,
        seed: int = 0,
        foreground_sampling: float = 0.0,
    ) -> None:
        if task not in TASKS:
            raise unknown_choice("task", task, TASKS)
        for name in targets:
            if name not in TARGETS[task]:
                raise unknown_choice(f"target for the {task} task", name, TARGETS[task])
        if not samples:
            raise SeglabError("the data set has no samples")
        missing = [s for s in samples if s.label is None]
        if missing:
            raise DataError(missing[0].image, "image has no label")
        if (patch_size is not None and patch_size < 1) or patches_per_image < 1:
            raise SeglabError("patch_size and patches_per_image must be positive")
        if not 0.0 <= foreground_sampling <= 1.0:
            raise SeglabError(f"foreground_sampling must lie in [0, 1], got {foreground_sampling}")
        self.samples = list(samples)
        self.task, self.targets = task, tuple(targets)
        self.patch_size, self.patches_per_image = patch_size, patches_per_image
        self.transform, self.seed = transform, seed
        self.foreground_sampling = foreground_sampling
        self._foreground: OrderedDict[Path, list[np.ndarray]] = OrderedDict()  # label -> positions (LRU)
        self._foreground_count = 0  # positions held in self._foreground
        self.intensity = intensity or IntensityScaling("dtype")
        self._ranges: dict[Path, tuple[Any, Any]] = {}  # image -> its intensity range (image mode)
        self._cache: dict[str, tuple[Path, Any]] = {}  # last image/label read by this process

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}  # workers start with an empty cache

    def __len__(self) -> int:
        return len(self.samples) * self.patches_per_image

    def _generator(self) -> np.random.Generator:
        """A generator for one item: one draw from torch's global generator, mixed with ``seed``."""
        return np.random.default_rng([self.seed, int(torch.randint(0, 2**62, ()).item())])

    def _load(self, kind: str, path: Path, shape: tuple[int, int] | None = None) -> Any:
        cached = self._cache.get(kind)
        if cached is not None and cached[0] == path:
            return cached[1]
        arr = None if kind == "label" and self.task == "panoptic" else _memmap(path, label=kind == "label")
        if arr is None and kind == "label" and self.task == "panoptic":  # instance * 256 + class
            from seglab.data.panoptic import read_encoded

            arr = read_encoded(path)
        elif arr is None and kind == "image":
            arr = read_image(path)
        elif arr is None and path.suffix.lower() == ".xml":
            from seglab.data.monuseg import read_monuseg_xml

            arr = read_monuseg_xml(path, shape)
        elif arr is None:
            arr = read_label(path)
        self._cache[kind] = (path, arr)
        return arr

    def read(self, sample: Sample, box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read the image (``H x W x C``, stored dtype) and int64 label of a sample, or a window.

        Args:
            box: ``(top, left, height, width)``, or ``None`` for everything.
        """
        image = self._load("image", sample.image)
        label = self._load("label", sample.label, image.shape[:2])
        if tuple(label.shape) != tuple(image.shape[:2]):
            raise DataError(
                sample.label,
                f"label shape {tuple(label.shape)} differs from image {sample.image} shape {tuple(image.shape[:2])}",
            )
        if box is not None:
            top, left, h, w = box
            image, label = image[top : top + h, left : left + w], label[top : top + h, left : left + w]
        image = np.array(image)
        return image, _check_label_crop(sample.label, np.asarray(label))

    def _range(self, sample: Sample) -> tuple[Any, Any]:
        """The intensity range of the whole image (a patch's own percentiles would differ)."""
        if sample.image not in self._ranges:
            self._ranges[sample.image] = self.intensity.range_of_array(self._load("image", sample.image))
        return self._ranges[sample.image]

    def _window(self, sample: Sample) -> tuple[int, int, int, int] | None:
        if self.patch_size is None:
            return None
        h, w = self._load("image", sample.image).shape[:2]
        rng, p = self._generator(), self.patch_size
        if self.foreground_sampling > 0 and rng.random() < self.foreground_sampling:
            positions = self._foreground_positions(sample, (h, w))
            if positions:
                cls = positions[int(rng.integers(len(positions)))]
                row, col = cls[int(rng.integers(len(cls)))]
                top, left = min(max(0, int(row) - p // 2), max(0, h - p)), min(max(0, int(col) - p // 2), max(0, w - p))
                return top, left, min(p, h), min(p, w)
        top = int(rng.integers(0, h - p + 1)) if h > p else 0
        left = int(rng.integers(0, w - p + 1)) if w > p else 0
        return top, left, min(p, h), min(p, w)

    def _foreground_positions(self, sample: Sample, shape: tuple[int, int]) -> list[np.ndarray]:
        """:func:`foreground_positions` of a sample's label, cached (the subset depends on the
        seed and the label path only, so every worker and a resumed run find the same)."""
        found = self._foreground.get(sample.label)
        if found is None:
            import zlib

            rng = np.random.default_rng([self.seed, zlib.crc32(str(sample.label).encode())])
            found = foreground_positions(self._load("label", sample.label, shape), self.task, rng)
            self._foreground[sample.label] = found
            self._foreground_count += sum(map(len, found))
            while len(self._foreground) > 1 and self._foreground_count > _FG_CACHED:
                self._foreground_count -= sum(map(len, self._foreground.popitem(last=False)[1]))
        self._foreground.move_to_end(sample.label)
        return found

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, tuple):  # (index, epoch): randomness from (seed, epoch, index) only
            index, epoch = index
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
                return self[index]
        if not 0 <= index < len(self):
            raise IndexError(index)
        sample = self.samples[index % len(self.samples)]
        image, label = self.read(sample, self._window(sample))
        if self.patch_size is not None:
            pad_value = IGNORE_INDEX if self.task == "semantic" else _PAD
            image = _pad(image, self.patch_size, "reflect")
            label = _pad(label, self.patch_size, "constant", pad_value)
        image_t, label_t = self.intensity(image, self._range(sample)), torch.from_numpy(label)
        if self.transform is not None:
            image_t, label_t = self.transform(image_t, label_t)
        item = self._targets(label_t.numpy())
        item.update(image=image_t.float(), stem=sample.stem)
        return item

    def _targets(self, label: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.task == "semantic":
            label = np.where(label == _PAD, IGNORE_INDEX, label)  # borders exposed by affine / elastic
            out["semantic"] = torch.from_numpy(label.astype(np.int64))
            if "foreground" in self.targets:
                out["foreground"] = torch.from_numpy(foreground(label, ignore_index=IGNORE_INDEX))
            return out
        padded = label == _PAD
        if self.task == "panoptic":
            from seglab.data.panoptic import decode

            label, classes = decode(label)
            out["classes"] = torch.from_numpy(np.where(padded, IGNORE_INDEX, classes).astype(np.int64))
        inst = np.where(padded, 0, label)
        out["instances"] = torch.from_numpy(inst.astype(np.int64))
        # targets see the padded area as a continuation of the nearest real pixel, so nuclei cut
        # by the image edge get no boundary there (as at an image border); it is ignored anyway
        extended = _extend_into(label, padded) if padded.any() else inst
        makers = {
            "three_class": lambda: three_class_targets(extended),
            "foreground": lambda: foreground(inst),
            "semantic": lambda: foreground(inst),
            "distance": lambda: np.where(padded, 0, distance_targets(extended)).astype(np.float32),
        }
        for name in (n for n in self.targets if n in makers):  # panoptic "classes": set above
            target = makers[name]()
            if name != "distance":
                target[padded] = IGNORE_INDEX
            out[name] = torch.from_numpy(target)
        return out


def make_loader(
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader with sensible defaults: persistent workers when ``num_workers > 0``,
    pinned memory when CUDA is available. Whole-image data sets with varying sizes need
    ``batch_size=1``."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
    )
