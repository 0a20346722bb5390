"""A 2-D array kept on disk as compressed square chunks, for the block pipeline's scratch maps.

The block pipeline writes a slide's provisional instance ids (and the pyramid writer its reduced
levels) once, region by region, and reads them back row band by row band; such a map is as large
as the slide and mostly zeros. :class:`ChunkedArray` stores each ``chunk x chunk`` piece as one
zstd-compressed file (``<folder>/<row>.<col>``) and no file at all for an all-zero piece, so disk
use follows the objects and memory holds one region at a time. A chunk costs about 0.1 ms to read
and 0.5 ms to write here, several times less than a zarr array's per-chunk machinery, which
dominated writing the pyramid of a slide with hundreds of thousands of chunks.

Only what the pipeline needs: rectangular regions (``a[y0:y1, x0:x1]``, ``a[y0:y1]`` for whole
rows) read and written, steps of 1; a partly written chunk is read, updated and rewritten.
Writes from one thread at a time (the pipeline's writer thread, then reads after it is done).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class ChunkedArray:
    """An ``H x W`` array of ``dtype`` in ``folder`` (created), zeros where nothing was written."""

    def __init__(self, folder: str | os.PathLike[str], shape: tuple[int, int], dtype: Any, *, chunk: int = 256,
                 level: int = 1) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.chunk, self.level = int(chunk), level
        self.stored: set[tuple[int, int]] = set()  # chunks with a file (a nonzero pixel)

    def _bounds(self, key: Any) -> tuple[int, int, int, int]:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        y0, y1, ys = rows.indices(self.shape[0])
        x0, x1, xs = cols.indices(self.shape[1])
        if ys != 1 or xs != 1:
            raise ValueError("ChunkedArray takes rectangular regions (slices with step 1)")
        return y0, max(y1, y0), x0, max(x1, x0)

    def _cells(self, y0: int, y1: int, x0: int, x1: int):
        """The chunks meeting a region: ``(cy, cx, chunk box, region box)`` as slices."""
        c = self.chunk
        for cy in range(y0 // c, -(-y1 // c)):
            for cx in range(x0 // c, -(-x1 // c)):
                a, b = max(y0, cy * c), min(y1, (cy + 1) * c)
                d, e = max(x0, cx * c), min(x1, (cx + 1) * c)
                yield cy, cx, np.s_[a - cy * c : b - cy * c, d - cx * c : e - cx * c], np.s_[a - y0 : b - y0, d - x0 : e - x0]

    def _path(self, cy: int, cx: int) -> Path:
        return self.folder / f"{cy}.{cx}"

    def _read(self, cy: int, cx: int) -> np.ndarray | None:
        if (cy, cx) not in self.stored:
            return None
        import imagecodecs

        raw = imagecodecs.zstd_decode(self._path(cy, cx).read_bytes())
        return np.frombuffer(raw, self.dtype).reshape(self.chunk, self.chunk)

    def __getitem__(self, key: Any) -> np.ndarray:
        y0, y1, x0, x1 = self._bounds(key)
        out = np.zeros((y1 - y0, x1 - x0), self.dtype)
        for cy, cx, inner, outer in self._cells(y0, y1, x0, x1):
            data = self._read(cy, cx)
            if data is not None:
                out[outer] = data[inner]
        return out

    def read_nonzero(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """``self[y0:y1, x0:x1]``, or ``None`` when it is all zeros (without a read when no
        stored chunk meets it): a tile function for :func:`~seglab.inference.pyramid_writer.write_pyramid`."""
        if not any((cy, cx) in self.stored for cy, cx, _, _ in self._cells(y0, y1, x0, x1)):
            return None
        out = self[y0:y1, x0:x1]
        return out if out.any() else None

    def __setitem__(self, key: Any, value: Any) -> None:
        import imagecodecs

        y0, y1, x0, x1 = self._bounds(key)
        value = np.broadcast_to(np.asarray(value, self.dtype), (y1 - y0, x1 - x0))
        c = self.chunk
        for cy, cx, inner, outer in self._cells(y0, y1, x0, x1):
            part = value[outer]
            whole = part.shape == (c, c)
            if whole:
                data = part
            else:
                old = self._read(cy, cx)
                if old is None and not part.any():
                    continue
                data = np.zeros((c, c), self.dtype) if old is None else old.copy()
                data[inner] = part
            if data.any():
                self._path(cy, cx).write_bytes(imagecodecs.zstd_encode(np.ascontiguousarray(data), level=self.level))
                self.stored.add((cy, cx))
            elif (cy, cx) in self.stored:
                self._path(cy, cx).unlink()
                self.stored.discard((cy, cx))
