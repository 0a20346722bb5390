"""Square blocks over a large image, and union-find stitching of their instance maps.

An image is cut into ``block x block`` *cores*; each core is decoded together with a ``margin``
of context on every side (its *extended* region), and only the core's pixels are kept. Every
instance piece in a core gets a provisional id, unique over the image. Pieces that meet across a
shared core face are then joined with a union-find over these ids:

* for every pixel pair ``(p, q)`` across a face, ``p`` in this core and ``q`` in the
  neighbour's, each of the two blocks says, from its own decoding (which sees ``q`` resp. ``p``
  in its margin), whether ``p`` and ``q`` belong to the same instance;
* the piece at ``p`` and the piece at ``q`` are joined when at least one of the two decodings
  says so (both see the face with ``margin`` pixels of context; where the decoder is local, e.g.
  connected components or a watershed whose context is below the margin, they agree, and the
  partition equals decoding the whole image at once).

An object of any size (wider than the margin, a block, or several blocks) thus gets one id: the
smallest provisional id of its pieces (the union-find root). Only a few face lines per block and
one integer per piece are kept (the per-object table), never a map of the image; the final ids
are applied when the map is written (:mod:`seglab.inference.slide_run`) or, for an image held in
memory, in one pass at the end (:func:`seglab.inference.stitch.decode_blockwise`).

Pieces that touch only diagonally across a block corner are not joined (faces only). Steps of a
decoder that are not local stay per block: a hole wider than a block's view is not seen
enclosed, so ``fill_holes`` leaves it open; ``min_size`` judges each block's view of an object.

Reference: the union of labels across chunk faces as in dask-image's ``label`` (connected
components over chunks), with both sides' decodings voting instead of plain adjacency, so that
two touching nuclei on either side of a face are not merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockGrid:
    """Cores of ``block`` px and their extended regions (``margin`` more per side, clipped)."""

    height: int
    width: int
    block: int
    margin: int

    @property
    def n_by(self) -> int:
        return -(-self.height // self.block)

    @property
    def n_bx(self) -> int:
        return -(-self.width // self.block)

    def __len__(self) -> int:
        return self.n_by * self.n_bx

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Blocks ``(by, bx)`` in raster order (the order :class:`UnionStitcher` needs)."""
        for by in range(self.n_by):
            for bx in range(self.n_bx):
                yield by, bx

    def core(self, by: int, bx: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of a block's core."""
        b = self.block
        return by * b, min((by + 1) * b, self.height), bx * b, min((bx + 1) * b, self.width)

    def extended(self, by: int, bx: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the core plus its margin, clipped to the image."""
        y0, y1, x0, x1 = self.core(by, bx)
        m = self.margin
        return max(y0 - m, 0), min(y1 + m, self.height), max(x0 - m, 0), min(x1 + m, self.width)


class UnionFind:
    """Disjoint sets over provisional ids ``1..n`` (0 = background); the root is the smallest id."""

    def __init__(self) -> None:
        self.parent = np.zeros(1024, np.int64)
        self.count = 0

    def add(self, n: int) -> int:
        """Make ``n`` new singleton ids; returns the first."""
        first = self.count + 1
        need = first + n
        if need > self.parent.size:
            grown = np.zeros(max(need, 2 * self.parent.size), np.int64)
            grown[: self.parent.size] = self.parent
            self.parent = grown
        self.parent[first:need] = np.arange(first, need)
        self.count += n
        return first

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = int(parent[root])
        while parent[i] != root:  # path compression
            parent[i], i = root, int(parent[i])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        """The root of every id (index 0 -> 0): the final id of each provisional id."""
        p = self.parent[: self.count + 1].copy()
        while True:
            q = p[p]
            if np.array_equal(q, p):
                return p
            p = q


_SIDES = ("top", "bottom", "left", "right")


class UnionStitcher:
    """Provisional ids for each decoded core, joined across faces (module docstring).

    Blocks must be added in raster order (``for by, bx in grid``).
    """

    def __init__(self, grid: BlockGrid) -> None:
        if grid.margin < 1:
            raise ValueError("stitching needs a margin of at least 1 pixel")
        self.grid = grid
        self.uf = UnionFind()
        self._below: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # bx -> bottom face of the row above
        self._right: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, by: int, bx: int, labels: np.ndarray | None) -> tuple[np.ndarray | None, int, np.ndarray]:
        """Stitch one block.

        Args:
            by, bx: the block.
            labels: the local instance map of its extended region, or ``None`` (nothing there).

        Returns:
            ``(core, first, border)``: the core's provisional ids (uint32, ``None`` when empty),
            the first new id, and for each new id ``first + i`` whether it touches a face shared
            with another block (it may be joined to other pieces; the others are final now).
        """
        grid = self.grid
        y0, y1, x0, x1 = grid.core(by, bx)
        h, w = y1 - y0, x1 - x0
        empty = np.zeros(0, bool)
        if labels is None or not labels.any():
            self._store(by, bx, None, None, h, w)
            return None, self.uf.count + 1, empty
        ey0, _, ex0, _ = grid.extended(by, bx)
        oy, ox = y0 - ey0, x0 - ex0
        local = labels[oy : oy + h, ox : ox + w]
        present = np.unique(local)
        present = present[present > 0]
        first = self.uf.add(present.size)
        lut = np.zeros(int(labels.max()) + 1, np.uint32)
        lut[present] = first + np.arange(present.size, dtype=np.uint32)
        core = lut[local]
        faces = {
            "top": (core[0], labels[oy - 1, ox : ox + w] == local[0]) if oy > 0 else None,
            "bottom": (core[-1], labels[oy + h, ox : ox + w] == local[-1]) if oy + h < labels.shape[0] else None,
            "left": (core[:, 0], labels[oy : oy + h, ox - 1] == local[:, 0]) if ox > 0 else None,
            "right": (core[:, -1], labels[oy : oy + h, ox + w] == local[:, -1]) if ox + w < labels.shape[1] else None,
        }
        border = np.zeros(present.size, bool)
        for face in faces.values():
            if face is not None:
                border[face[0][face[0] > 0] - first] = True
        if by > 0:
            self._join(self._below.get(bx), faces["top"])
        if bx > 0:
            self._join(self._right, faces["left"])
        self._store(by, bx, faces["bottom"], faces["right"], h, w)
        return core, first, border

    def _store(self, by: int, bx: int, bottom, right, h: int, w: int) -> None:
        zeros = lambda n: (np.zeros(n, np.uint32), np.zeros(n, bool))  # noqa: E731
        self._below[bx] = bottom if bottom is not None else zeros(w)
        self._right = right if right is not None else zeros(h)

    def _join(self, mine, theirs) -> None:
        if mine is None or theirs is None:
            return
        (a, same_a), (b, same_b) = mine, theirs
        pair = (a > 0) & (b > 0) & (same_a | same_b)
        if not pair.any():
            return
        for u, v in np.unique(np.stack([a[pair], b[pair]]), axis=1).T:
            self.uf.union(int(u), int(v))
