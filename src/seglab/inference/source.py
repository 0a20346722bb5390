"""Lazily opened images: read only the rows a band of tiles needs.

* uncompressed, contiguous TIFF: ``tifffile.memmap`` (the OS pages in only the rows read);
* tiled or compressed TIFF: ``tifffile.imread(aszarr=True)`` opened with zarr when zarr is
  installed (only the TIFF tiles under the requested rows are decoded), else read whole;
* PNG / JPEG / BMP (and in-memory arrays): held whole; these formats are small in practice.

Every source answers ``shape`` (``H, W, C``), ``dtype``, ``read_rows(y0, y1)`` returning an
``(y1 - y0) x W x C`` numpy array in the stored dtype, and ``read_region(y0, y1, x0, x1)``
returning ``(y1 - y0) x (x1 - x0) x C``. Whole slides (OpenSlide formats, pyramids, µm/px) open
through :mod:`seglab.inference.slide`; :func:`seglab.inference.slide_view.model_view` gives them
this same interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.io import read_image
from seglab.errors import DataError

_TIFF = (".tif", ".tiff")


class ArraySource:
    """An in-memory ``H x W`` or ``H x W x C`` image."""

    def __init__(self, image: np.ndarray, path: str | Path = "<array>") -> None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or not 1 <= image.shape[-1] <= 4:
            raise DataError(path, f"expected a 2-D image with 1-4 channels, got array of shape {image.shape}")
        self.array, self.path = image, Path(path)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        return np.asarray(self.array[y0:y1])

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` as ``(y1 - y0) x (x1 - x0) x C`` (a 2-D block)."""
        return np.asarray(self.array[y0:y1, x0:x1])

    def read_all(self) -> np.ndarray:
        return np.asarray(self.array)

    def close(self) -> None:
        """Release the file behind the source (nothing to release for an in-memory image)."""

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChannelLastView:
    """Row access to a lazily indexed array whose axes are (H, W[, C]) or (C, H, W)."""

    def __init__(self, arr: Any, channel_first: bool) -> None:
        self.arr, self.channel_first = arr, channel_first

    def __getitem__(self, index: slice | tuple[slice, slice]) -> np.ndarray:
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        if self.arr.ndim == 2:
            return np.asarray(self.arr[rows, cols])[..., None]
        if self.channel_first:
            return np.moveaxis(np.asarray(self.arr[:, rows, cols]), 0, -1)
        return np.asarray(self.arr[rows, cols])


class LazyTiffSource(ArraySource):
    """A TIFF read by rows through a memory map or zarr (see module docstring)."""

    def __init__(self, arr: Any, path: Path, handle: Any = None) -> None:
        shape = tuple(arr.shape)
        channel_first = len(shape) == 3 and shape[0] <= 4 and shape[-1] > 4
        if len(shape) == 2:
            hwc = (*shape, 1)
        elif len(shape) == 3:
            hwc = (shape[1], shape[2], shape[0]) if channel_first else shape
        else:
            raise DataError(path, f"expected a 2-D image with 1-4 channels, got array of shape {shape}")
        if not 1 <= hwc[2] <= 4:
            raise DataError(path, f"expected a 2-D image with 1-4 channels, got array of shape {shape}")
        self.array, self.path, self._handle = _ChannelLastView(arr, channel_first), path, handle
        self._shape, self._dtype = hwc, np.dtype(arr.dtype)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        try:
            return self.array[y0:y1]
        except Exception as exc:
            raise DataError(self.path, f"unreadable image rows {y0}-{y1} ({type(exc).__name__}: {exc})") from None

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        try:
            return self.array[y0:y1, x0:x1]
        except Exception as exc:
            raise DataError(self.path, f"unreadable image region [{y0}:{y1}, {x0}:{x1}] ({type(exc).__name__}: {exc})") from None

    def read_all(self) -> np.ndarray:
        return self.read_rows(0, self._shape[0])

    def close(self) -> None:
        """Close the zarr store of a compressed or tiled TIFF (a memory map closes with its arrays)."""
        handle, self._handle = self._handle, None
        if handle is not None and hasattr(handle, "close"):
            handle.close()


def _open_tiff(path: Path) -> ArraySource:
    import tifffile

    try:
        return LazyTiffSource(tifffile.memmap(path, mode="r"), path)
    except DataError:
        raise
    except Exception:  # compressed, tiled or otherwise not memory-mappable
        pass
    try:
        import zarr
    except ImportError:
        return ArraySource(read_image(path), path)
    try:
        store = tifffile.imread(path, aszarr=True)
        arr = zarr.open(store, mode="r")
        if not hasattr(arr, "shape"):  # a pyramid group: take full resolution
            arr = arr[sorted(arr.array_keys())[0]]
        return LazyTiffSource(arr, path, store)
    except DataError:
        raise
    except Exception:
        return ArraySource(read_image(path), path)


def check_finite(source: ArraySource, band_pixels: int = 1 << 22) -> None:
    """Refuse a float image without one finite pixel (all NaN or infinite): there is nothing to
    predict, and the model would turn it into an empty map that looks like a result.

    Integer images pass at once; a float image is read band by band up to its first finite
    pixel (the first band, for any real image).

    Raises:
        DataError: naming the image, when no pixel is finite.
    """
    if source.dtype.kind not in "fc":
        return
    height, width, channels = source.shape
    rows = max(1, band_pixels // max(1, width * channels))
    for y0 in range(0, height, rows):
        if np.isfinite(source.read_rows(y0, min(height, y0 + rows))).any():
            return
    raise DataError(source.path, "image has no finite pixel (all NaN or infinite); nothing to predict")


def open_image(path: str | Path) -> ArraySource:
    """Open an image for row-wise reading (lazily where the format allows).

    Raises:
        DataError: missing or unreadable file, or not a 2-D image with 1-4 channels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix.lower() in _TIFF:
        return _open_tiff(path)
    return ArraySource(read_image(path), path)
