"""Image and label file I/O at the edge of the library.

Images are returned as numpy ``H x W x C`` arrays in their stored dtype (uint8, uint16 or float);
:func:`image_to_tensor` turns them into the library's float32 ``C x H x W`` convention. Label maps
are ``H x W`` integer arrays. Every failure is a :class:`~seglab.errors.DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seglab.errors import DataError
from seglab.fileio import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_SUFFIXES = (".tif", ".tiff", ".png")
_TIFF = (".tif", ".tiff")

PathLike = str | os.PathLike[str]

# Pillow refuses images over 2 x 89.5 M pixels as possible decompression bombs; a stitched PNG
# scan passes that easily, and TIFFs have no such limit here. The user's own files are read up
# to this many pixels (12 GB as RGB); beyond it, store the image as a tiled TIFF.
PIL_MAX_PIXELS = 1 << 32
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_limit_raised() -> Iterator[None]:
    """Raise Pillow's ``MAX_IMAGE_PIXELS`` to :data:`PIL_MAX_PIXELS` while an image is opened (the
    check runs in ``Image.open``), then restore it, so the process-wide guard is left as it was."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        before = Image.MAX_IMAGE_PIXELS
        if before is not None and before < PIL_MAX_PIXELS:
            Image.MAX_IMAGE_PIXELS = PIL_MAX_PIXELS
        try:
            yield
        finally:
            if Image.MAX_IMAGE_PIXELS == PIL_MAX_PIXELS:
                Image.MAX_IMAGE_PIXELS = before


def _read_raw(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with _pil_limit_raised():
            im = Image.open(path)
        with im:
            if im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            return np.asarray(im)
    except DataError:
        raise
    except Exception as exc:  # every decoder raises its own types
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as ``H x W x C`` (C in 1..4) in its stored dtype.

    Gray images get a channel axis; TIFFs stored channel-first (``C x H x W`` with C <= 4 and
    H, W > 4) are moved to channel-last.

    Raises:
        DataError: missing or unreadable file, or not a 2-D image with 1-4 channels.
    """
    path = Path(path)
    arr = _read_raw(path)
    if arr.ndim == 2:
        arr = arr[..., None]
    elif arr.ndim == 3 and arr.shape[0] <= 4 and arr.shape[-1] > 4:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or not 1 <= arr.shape[-1] <= 4:
        raise DataError(path, f"expected a 2-D image with 1-4 channels, got array of shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr)


def image_to_tensor(image: np.ndarray):
    """Convert an ``H x W x C`` array to a float32 ``C x H x W`` torch tensor in [0, 1].

    Integer images are divided by their dtype's maximum (255 for uint8, 65535 for uint16);
    float images are taken as they are. The tensor never shares memory with ``image``, which
    may be read-only (a decoded PNG, a memory-mapped TIFF: torch warns on those).
    """
    import torch

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    out = torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.float32, order="C"))  # always a copy
    if np.issubdtype(arr.dtype, np.integer):
        out.div_(float(np.iinfo(arr.dtype).max))
    return out


def scale_intensity(image: np.ndarray, low: list[float] | None = None, high: list[float] | None = None):
    """``H x W x C`` array -> float32 ``C x H x W`` tensor in [0, 1] by per-channel clipping.

    ``(x - low) / (high - low)`` clipped to [0, 1], in the image's stored units: a 16-bit
    fluorescence image whose nuclei span a few hundred counts fills [0, 1] as an 8-bit H&E
    tile does. ``low``/``high`` come from the data set's fingerprint (its 0.5th and 99.5th
    percentiles); ``None`` falls back to :func:`image_to_tensor` (the dtype's range).
    """
    import torch

    if low is None or high is None:
        return image_to_tensor(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    lo = np.asarray(low, dtype=np.float32)
    span = np.maximum(np.asarray(high, dtype=np.float32) - lo, 1e-6)
    out = (arr.astype(np.float32) - lo) / span
    np.clip(out, 0.0, 1.0, out=out)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def read_label(path: PathLike) -> np.ndarray:
    """Read a label map (instance ids or class indices) as an ``H x W`` int64 array.

    Raises:
        DataError: missing or unreadable file, more than one channel, or non-integer values.
    """
    path = Path(path)
    arr = _read_raw(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        raise DataError(path, f"label map must be single-channel, got {arr.shape[-1]} channels")
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise DataError(path, f"label map must be 2-D, got array of shape {arr.shape}")
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise DataError(path, "label map holds non-integer values")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.min(initial=0) < 0:
        raise DataError(path, "label map holds negative values")
    return arr.astype(np.int64, copy=False)


def write_label(path: PathLike, label: np.ndarray) -> None:
    """Write a label map atomically.

    ``.tif``: uint16, or uint32 when the largest id exceeds 65,535 (instance maps).
    ``.png``: uint8 when values fit, else 16-bit (class maps). Values must be non-negative.
    """
    path = Path(path)
    label = np.asarray(label)
    top = int(label.max(initial=0))
    if label.ndim != 2 or (label.size and int(label.min()) < 0):
        raise DataError(path, "can only write a non-negative 2-D label map")
    if path.suffix.lower() in _TIFF:
        import tifffile

        dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, label.astype(dtype), compression="zlib")
    elif path.suffix.lower() == ".png":
        from PIL import Image

        if top > np.iinfo(np.uint16).max:
            raise DataError(path, f"PNG holds at most 65535 labels, map has ids up to {top}; use .tif")
        dtype = np.uint8 if top <= 255 else np.uint16
        with atomic_path(path) as tmp:
            Image.fromarray(label.astype(dtype)).save(tmp)
    else:
        raise DataError(path, "label maps are written as .tif or .png")


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write an ``H x W x C`` (or ``H x W``) uint8/uint16 image atomically (PNG, JPEG or TIFF)."""
    path = Path(path)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    with atomic_path(path) as tmp:
        if path.suffix.lower() in _TIFF:
            import tifffile

            tifffile.imwrite(tmp, image, photometric="rgb" if image.ndim == 3 and image.shape[-1] >= 3 else None)
        else:
            from PIL import Image

            Image.fromarray(image).save(tmp)


def find_file(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """Return ``folder/<stem><suffix>`` for the first suffix that exists (case-insensitive)."""
    for suffix in suffixes:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


@dataclass(frozen=True)
class Sample:
    """One image and its label file (``None`` for unlabelled images), as the folder readers
    (:func:`seglab.data.dataset.find_samples`, :func:`seglab.data.monuseg.find_monuseg_samples`)
    list them."""

    stem: str
    image: Path
    label: Path | None = None
