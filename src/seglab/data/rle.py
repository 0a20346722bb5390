"""COCO run-length encoding (RLE) of binary masks, byte-compatible with pycocotools.

A COCO RLE is ``{"size": [h, w], "counts": ...}``. The mask is flattened in column-major
(Fortran) order and cut into alternating runs of 0s and 1s, starting with a (possibly empty)
run of 0s. ``counts`` is either the plain list of run lengths ("uncompressed" RLE, as found in
``iscrowd`` annotations) or the compressed string of ``pycocotools.mask.encode``: each run
length (from the fourth on, minus the run two before it) written as little-endian groups of
5 bits, each group offset by 48 into printable ASCII, bit 0x20 meaning "more groups follow" and
bit 0x10 of the last group carrying the sign.

Reference: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and
``maskApi.c`` of the cocoapi (``rleToString`` / ``rleFrString``), transcribed here in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seglab.errors import SeglabError


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary mask in column-major order, starting with a run of zeros.

    Args:
        mask: ``H x W`` array, non-zero = inside.

    Returns:
        The uncompressed COCO ``counts`` list (its sum is ``H * W``).
    """
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return runs


def counts_to_string(counts: list[int]) -> str:
    """Compress a run-length list into the COCO string form (``rleToString`` of maskApi.c)."""
    out: list[str] = []
    for i, run in enumerate(counts):
        x = int(run) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> list[int]:
    """Decompress a COCO RLE string into its run-length list (``rleFrString`` of maskApi.c)."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    pos = 0
    while pos < len(data):
        x, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise SeglabError("corrupt COCO RLE string: ends inside a run length")
            c = data[pos] - 48
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a binary mask as a compressed COCO RLE.

    Args:
        mask: ``H x W`` boolean (or 0/1) array.

    Returns:
        ``{"size": [h, w], "counts": str}``, equal to ``pycocotools.mask.encode`` of the same
        mask with ``counts`` decoded to ``str`` (JSON-ready).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise SeglabError(f"rle_encode expects a 2-D mask, got shape {mask.shape}")
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(mask_to_counts(mask))}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string/bytes or uncompressed list ``counts``) to a mask.

    Args:
        rle: ``{"size": [h, w], "counts": str | bytes | list[int]}``.

    Returns:
        ``H x W`` boolean mask.

    Raises:
        SeglabError: the run lengths do not add up to ``h * w`` or are negative.
    """
    try:
        h, w = (int(v) for v in rle["size"])
        raw = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise SeglabError("COCO RLE needs 'size': [h, w] and 'counts'") from None
    counts = list(raw) if isinstance(raw, list | tuple) else string_to_counts(raw)
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and (runs.min() < 0 or int(runs.sum()) != h * w):
        raise SeglabError(
            f"COCO RLE run lengths sum to {int(runs.sum())}, expected {h * w} for size [{h}, {w}]"
        )
    values = np.arange(runs.size, dtype=np.int64) % 2 == 1
    flat = np.repeat(values, runs)
    if flat.size != h * w:  # empty counts on an empty image
        flat = np.zeros(h * w, dtype=bool)
    return flat.reshape((h, w), order="F")
