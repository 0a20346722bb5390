"""``summary.csv``: one row per input, merged in under a lock so that several processes share it.

Columns (:data:`~seglab.inference.writers.SUMMARY_FIELDS`): ``stem``, ``instances`` (objects),
``mean_area`` (level-0 px), ``seconds``; slides add ``tissue_mm2`` (the tissue mask's area, or the
whole slide's with ``--tissue none``), ``objects_per_mm2``, ``mean_area_um2`` (empty when the µm/px
is unknown) and ``tiles_run`` / ``tiles_skipped`` (tiles of the model's grid with and without
tissue). Rows are sorted by stem; rows of earlier runs are kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seglab.inference.writers import read_summary, write_summary


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (``flock`` where the platform has it, else none)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per folder
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def merge_summary(path: str | Path, rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add (or replace) ``rows`` in ``summary.csv`` atomically, under a lock on its folder.

    Returns:
        All rows now in the file, by stem.
    """
    path = Path(path)
    with folder_lock(path.parent):
        merged = {**read_summary(path), **rows}
        write_summary(path, merged)
    return merged


def slide_summary_row(stem: str, objects: Any, seconds: float, *, mpp: float | None,
                      tissue_mm2: float | None, shape0: tuple[int, int], tiles_run: int, tiles_skipped: int) -> dict[str, Any]:
    """One slide's ``summary.csv`` row (``objects``: the :class:`~seglab.inference.geojson_stream.ObjectWriter`,
    ``None`` for the semantic task); the µm columns are empty when the µm/px is unknown."""
    if tissue_mm2 is None and mpp:
        tissue_mm2 = shape0[0] * shape0[1] * mpp * mpp / 1e6
    row: dict[str, Any] = {"stem": stem, "seconds": f"{seconds:.3f}", "tiles_run": tiles_run, "tiles_skipped": tiles_skipped,
                           "instances": "", "mean_area": "", "tissue_mm2": "", "objects_per_mm2": "", "mean_area_um2": ""}
    if tissue_mm2 is not None:
        row["tissue_mm2"] = f"{tissue_mm2:.6g}"
    if objects is None:
        return row
    n = objects.count
    row["instances"] = n
    row["mean_area"] = f"{objects.area_px / n:.1f}" if n else "0"
    if mpp:
        row["mean_area_um2"] = f"{objects.area_px / n * mpp * mpp:.2f}" if n else "0"
        if tissue_mm2:
            row["objects_per_mm2"] = f"{n / tissue_mm2:.1f}"
    return row


