"""GeoJSON written object by object while blocks complete (the block pipeline's ``<stem>.geojson``).

The FeatureCollection is written to an open (temporary) file one Feature at a time; nothing
holds the features of the whole slide. Features follow :mod:`seglab.inference.writers`
(polygons with holes, ``[x, y]`` level-0 pixel corners, QuPath's ``objectType`` and
``classification``), with these properties: ``id`` (the id in ``<stem>_instances.ome.tif``),
``area`` (level-0 pixels), ``area_um2`` (when the µm/px is known), ``centroid`` ``[x, y]``
(level-0 pixels) and ``score`` (mean foreground probability, where the model gives one).

Which object is written when (:class:`ObjectWriter`): an object whose pieces touch no face shared
with another block is final when its block completes and is written at once. A piece on a shared
face may still be joined to pieces of later blocks, so only its small record (bounding box,
pixel count, coordinate and score sums) is kept; after the last block the pieces are grouped by
their union-find root and each such object is written once, its polygon traced from its bounding
box of the provisional map (never more of the map than one object's box).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from scipy import ndimage as ndi

from seglab.inference.writers import class_color, mask_polygons

# per border piece: y0, x0, y1, x1 (source px), area, sum of rows, sum of cols, sum of foreground
_STATS = 8


class GeoJSONStream:
    """A FeatureCollection streamed to an open text file (call :meth:`close` to finish it)."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh, self.count = fh, 0
        fh.write('{"type": "FeatureCollection", "features": [\n')

    def add(self, feature: dict[str, Any]) -> None:
        self.fh.write((",\n" if self.count else "") + json.dumps(feature, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        self.fh.write("\n]}\n")


def piece_stats(core: np.ndarray, foreground: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, list]:
    """Ids in a core, their ``_STATS`` records (core coordinates) and their slices in the core."""
    flat = core.ravel()
    where = np.flatnonzero(flat)  # object pixels only: most of a slide is background
    ids, local = np.unique(flat[where], return_inverse=True)
    n = ids.size
    rows, cols = np.divmod(where, core.shape[1])
    area = np.bincount(local, minlength=n).astype(np.float64)
    sy = np.bincount(local, weights=rows.astype(np.float64), minlength=n)
    sx = np.bincount(local, weights=cols.astype(np.float64), minlength=n)
    fg = (np.bincount(local, weights=np.asarray(foreground, np.float64).ravel()[where], minlength=n)
          if foreground is not None else np.full(n, np.nan))
    dense = np.zeros(core.size, np.int64)
    dense[where] = local + 1
    slices = ndi.find_objects(dense.reshape(core.shape), max_label=n)
    stats = np.zeros((n, _STATS))
    for i, sl in enumerate(slices):
        stats[i, :4] = sl[0].start, sl[1].start, sl[0].stop, sl[1].stop
    stats[:, 4:] = np.stack([area, sy, sx, fg], 1) if n else np.zeros((0, 4))
    return ids, stats, slices


class ObjectWriter:
    """Features of the stitched objects, streamed (module docstring).

    Args:
        stream: where features go.
        scale: level-0 pixels per source pixel.
        mpp: µm per level-0 pixel, or ``None``.
    """

    def __init__(self, stream: GeoJSONStream | None, *, scale: float = 1.0, mpp: float | None = None) -> None:
        self.stream, self.scale, self.mpp = stream, scale, mpp
        self.border: dict[int, np.ndarray] = {}
        self.count, self.area_px = 0, 0.0  # objects written, their summed level-0 area

    def add_block(self, core: np.ndarray, y0: int, x0: int, first: int, border: np.ndarray,
                  foreground: np.ndarray | None) -> None:
        """Write the final objects of one stitched core; keep the records of its border pieces."""
        ids, stats, slices = piece_stats(core, foreground)
        stats[:, [0, 2]] += y0
        stats[:, [1, 3]] += x0
        stats[:, 5] += stats[:, 4] * y0
        stats[:, 6] += stats[:, 4] * x0
        on_face = border[ids - first]
        for i in np.flatnonzero(on_face):
            self.border[int(ids[i])] = stats[i]
        for i in np.flatnonzero(~on_face):
            sl = slices[i]
            self._write(int(ids[i]), core[sl] == ids[i], stats[i])

    def finish(self, roots: np.ndarray, read_box: Callable[[int, int, int, int], np.ndarray]) -> None:
        """Write the objects made of border pieces, one feature each.

        Args:
            roots: the union-find root of every provisional id.
            read_box: provisional ids of ``[y0, y1) x [x0, x1)`` (source pixels).
        """
        groups: dict[int, np.ndarray] = {}
        for pid, s in sorted(self.border.items()):
            root = int(roots[pid])
            if root in groups:
                g = groups[root]
                g[:2] = np.minimum(g[:2], s[:2])
                g[2:4] = np.maximum(g[2:4], s[2:4])
                g[4:] += s[4:]
            else:
                groups[root] = s.copy()
        for root, s in groups.items():
            y0, x0, y1, x1 = (int(v) for v in s[:4])
            box = read_box(y0, y1, x0, x1)
            self._write(root, roots[box] == root, s)

    def _write(self, oid: int, mask: np.ndarray, s: np.ndarray) -> None:
        k = self.scale
        area = float(s[4]) * k * k
        self.count += 1
        self.area_px += area
        if self.stream is None:
            return
        polygons = mask_polygons(mask, int(s[0]), int(s[1]), scale=k)
        props: dict[str, Any] = {
            "id": oid, "area": round(area, 1) if k != 1 else int(area),
            "centroid": [round((s[6] / s[4] + 0.5) * k, 3), round((s[5] / s[4] + 0.5) * k, 3)],
        }
        if self.mpp:
            props["area_um2"] = round(area * self.mpp * self.mpp, 3)
        if not np.isnan(s[7]):
            props["score"] = round(float(s[7] / s[4]), 5)
        props.update(objectType="detection", classification={"name": "Nucleus", "color": class_color("Nucleus")},
                     isLocked=False)
        geometry = ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                    else {"type": "MultiPolygon", "coordinates": polygons})
        self.stream.add({"type": "Feature", "geometry": geometry, "properties": props})
