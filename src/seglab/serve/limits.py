"""What the server refuses, and how much it does at once.

* :class:`Limits`: upload bytes (413), declared pixels (413, read from the file's header before
  anything is decoded, so a PNG that declares 100 000 x 100 000 pixels in a few kB is refused
  without allocating), concurrent predictions, queue length and timeout (503).
* :func:`sniff` / :func:`declared_shape` / :func:`decode`: the image type from its first bytes
  (not from the client's word for it), its header's size, then the pixels (400 when truncated
  or undecodable).
* :class:`Gate`: at most ``concurrency`` predictions run, at most ``queue`` wait; one more is
  refused at once (503), a waiting one gives up after ``timeout`` seconds (503).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import numpy as np

MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"II*\x00": "tiff", b"MM\x00*": "tiff",
         b"II+\x00": "tiff", b"MM\x00+": "tiff"}


class HTTPProblem(Exception):
    """A request the server refuses: HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Server limits (``seglab serve`` flags)."""

    max_upload_mb: float = 64.0
    max_pixels: int = 64_000_000  # 8000 x 8000
    concurrency: int = 1
    queue: int = 8
    timeout: float = 120.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def sniff(head: bytes) -> str:
    """``png`` | ``jpeg`` | ``tiff`` from the first bytes; :class:`HTTPProblem` 415 otherwise."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    raise HTTPProblem(415, "not a PNG, JPEG or TIFF image (by its first bytes)")


def declared_shape(data: bytes, kind: str) -> tuple[int, int]:
    """``(height, width)`` the file's header declares, read without decoding any pixel."""
    try:
        if kind == "tiff":
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                shape = tif.series[0].shape
                axes = tif.series[0].axes
            h, w = shape[axes.index("Y")], shape[axes.index("X")]
            return int(h), int(w)
        if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            return int(im.size[1]), int(im.size[0])
    except HTTPProblem:
        raise
    except Exception as exc:  # noqa: BLE001 - any header the readers cannot parse
        if type(exc).__name__ == "DecompressionBombError":
            raise HTTPProblem(413, f"image declares more pixels than Pillow allows ({exc})") from None
        raise HTTPProblem(400, f"cannot read the {kind.upper()} header ({type(exc).__name__})") from None


def check_pixels(shape: tuple[int, int], limits: Limits) -> None:
    h, w = shape
    if h < 1 or w < 1:
        raise HTTPProblem(400, f"image declares an empty size {w} x {h}")
    if h * w > limits.max_pixels:
        raise HTTPProblem(413, f"image declares {w} x {h} = {h * w:,} pixels; this server takes at most {limits.max_pixels:,}")


def decode(data: bytes, kind: str) -> np.ndarray:
    """The pixels as ``H x W [x C]``; :class:`HTTPProblem` 400 when truncated or undecodable."""
    try:
        if kind == "tiff":
            import tifffile

            image = tifffile.imread(io.BytesIO(data))
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()
                image = np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK", "YCbCr", "LA", "PA") else im)
    except Exception as exc:  # noqa: BLE001 - truncated or damaged data
        raise HTTPProblem(400, f"cannot decode the {kind.upper()} image (truncated or damaged: {type(exc).__name__})") from None
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)  # planar TIFF
    if image.ndim not in (2, 3) or image.size == 0:
        raise HTTPProblem(400, f"expected a 2-d image with channels last, got shape {image.shape}")
    return image


class Gate:
    """Bounded concurrency with a bounded queue (module docstring); asyncio only."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.concurrency)
        self.active = 0
        self.waiting = 0

    async def __aenter__(self) -> Gate:
        if self.active + self.waiting >= self.limits.concurrency + self.limits.queue:
            raise HTTPProblem(503, f"server busy: {self.active} running and {self.waiting} queued; retry later")
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.limits.timeout)
        except TimeoutError:
            raise HTTPProblem(503, f"server busy: waited {self.limits.timeout:g} s in the queue; retry later") from None
        finally:
            self.waiting -= 1
        self.active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self.slots.release()
