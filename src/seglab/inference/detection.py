"""Prediction with direct instance-segmentation checkpoints (``--model maskrcnn``).

Mask R-CNN predicts boxes and masks, not per-pixel probabilities, so there is nothing to blend:
the image is cut into overlapping tiles, each tile is detected, and every object is kept by the
tile that owns its box centre (:func:`predict_tiled_detections`, merging with
:class:`seglab.instances.detections.TiledDetectionMerger`).
The image is read one band of tile rows at a time from its source (a memory-mapped TIFF or zarr
stays on disk), and each batch of tiles is painted into the instance map before the next is
detected, so memory holds the map and one band, not the image or every mask.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seglab.errors import SeglabError
from seglab.inference.predictor import Predictor, adapt_channels
from seglab.inference.sliding import tile_starts
from seglab.inference.source import ArraySource
from seglab.instances.detections import TiledDetectionMerger


class DetectionPredictor(Predictor):
    """A :class:`Predictor` for Mask R-CNN checkpoints (same options; ``tta`` is refused)."""

    detection: ClassVar[bool] = True

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], **kwargs: Any) -> None:
        if kwargs.get("tta"):
            raise SeglabError("test-time augmentation is not available for Mask R-CNN checkpoints")
        super().__init__(model, meta, **kwargs)

    def preprocess(self, rows: np.ndarray, path: str | os.PathLike[str] = "<array>",
                   value_range: tuple[Any, Any] | None = None) -> torch.Tensor:
        """``H x W x C`` rows -> ``C x H x W`` in [0, 1] (the model normalises inside)."""
        return self.scaling(adapt_channels(rows, self.in_channels, path), value_range)

    def predict_probs(self, image: Any) -> np.ndarray:
        raise SeglabError("Mask R-CNN predicts detections, not per-pixel probabilities")

    @torch.inference_mode()
    def predict_source(
        self, source: ArraySource, *, out: np.ndarray | None = None, on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        image = _BandReader(source, self)
        height, width = image.shape[-2:]
        labels = predict_tiled_detections(
            self.model, image, tile=self.tile or max(height, width), overlap=self.overlap,
            batch_size=self.batch_size, **(self.decoder or {}).get("kwargs", {}),
        )
        if on_tiles is not None:
            on_tiles(1, 1)
        if out is None:
            return labels.astype(np.int32, copy=False)
        out[...] = labels
        return out

    def predict(self, image: np.ndarray | str | Path) -> dict[str, np.ndarray]:
        """``{"instances": H x W int32}`` for one in-memory image or image file."""
        if isinstance(image, str | Path):
            from seglab.inference.source import open_image

            with open_image(image) as source:
                return self.predict(source)
        source = image if isinstance(image, ArraySource) else ArraySource(image)
        return {"instances": self.predict_source(source)}


@torch.no_grad()
def predict_tiled_detections(
    model: torch.nn.Module,
    image: Any,
    *,
    tile: int = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    min_size: int = 0,
    run_tile: Callable[[int, int, int, int], bool] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Run a detection model over overlapping tiles of a ``C x H x W`` image, merge to one map.

    Tiles are detected and painted batch by batch, so memory holds the instance map, one batch
    of tiles and whatever ``image`` keeps, never the masks of the whole image.

    Args:
        model: a torchvision-style detector in eval mode (list of images -> list of detections).
        image: ``C x H x W`` float image as the model takes it (Mask R-CNN: [0, 1]): a tensor, or
            any object with ``shape`` and tensor-valued ``image[:, r0:r1, c0:c1]`` (a lazy reader).
        tile: tile size; images up to this size run in one piece.
        overlap: tile overlap fraction (the overlap in pixels should exceed the largest object).
        batch_size: tiles per forward pass.
        min_size: instances with fewer visible pixels are dropped.
        run_tile: ``run_tile(top, left, h, w)`` says whether to detect a tile (e.g. only where
            there is tissue); tiles it refuses add no detections.
        **kwargs: ``score_threshold``, ``mask_threshold``
            (:class:`~seglab.instances.detections.TiledDetectionMerger`).
    """
    _, height, width = image.shape
    th, tw = min(tile, height), min(tile, width)
    rows, cols = tile_starts(height, th, overlap), tile_starts(width, tw, overlap)
    merger = TiledDetectionMerger((height, width), rows, cols, (th, tw), **kwargs)
    origins = [(r, c) for r in rows for c in cols if run_tile is None or run_tile(r, c, th, tw)]
    for i in range(0, len(origins), batch_size):
        batch = origins[i:i + batch_size]
        for det, origin in zip(model([image[:, r:r + th, c:c + tw] for r, c in batch]), batch, strict=True):
            merger.add({k: v.cpu() for k, v in det.items()}, origin)
    return merger.finish(min_size)


class _BandReader:
    """``C x H x W`` view of a source that reads and preprocesses one band of rows at a time.

    ``reader[:, r0:r1, c0:c1]`` returns the model's input tensor for that window; the last band
    read is kept, so the tiles of one tile row cost one read.
    """

    def __init__(self, source: ArraySource, predictor: DetectionPredictor) -> None:
        height, width = source.shape[:2]
        self.source, self.predictor = source, predictor
        self.shape = (predictor.in_channels, height, width)
        self.value_range = predictor.intensity_range(source)  # of the whole image, not per band
        self._band: tuple[tuple[int, int], torch.Tensor] | None = None

    def __getitem__(self, index: tuple[slice, slice, slice]) -> torch.Tensor:
        _, rows, cols = index
        key = (rows.start or 0, rows.stop if rows.stop is not None else self.shape[1])
        if self._band is None or self._band[0] != key:
            pixels = self.predictor.preprocess(self.source.read_rows(*key), self.source.path, self.value_range)
            self._band = (key, pixels.to(self.predictor.device))
        return self._band[1][:, :, cols]


class RegionDetections:
    """Local labels of regions of a large image with Mask R-CNN, for the block pipeline.

    Each region runs :func:`predict_tiled_detections` over its own tile grid; tiles whose box
    (in level-0 pixels) has no tissue by ``covers`` are not detected and count as skipped.
    Calling it returns ``(labels, None)``, or ``(None, None)`` when no tile has tissue; all the
    work is :meth:`infer` (Mask R-CNN's masks are its output), :meth:`decode` passes it on.
    """

    def __init__(self, predictor: DetectionPredictor, source: ArraySource, *, covers: Any = None, scale: float = 1.0) -> None:
        from seglab.inference.region import TileCounts

        self.predictor, self.source = predictor, source
        self.tiles = TileCounts(covers, scale)
        self.value_range = predictor.intensity_range(source)

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray | None, None]:
        return self.infer(y0, y1, x0, x1)

    @staticmethod
    def decode(inferred: tuple[np.ndarray | None, None]) -> tuple[np.ndarray | None, None]:
        return inferred

    @torch.inference_mode()
    def infer(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray | None, None]:
        from seglab.inference.region import read_region

        p = self.predictor
        tile = p.tile or max(y1 - y0, x1 - x0)
        th, tw = min(tile, y1 - y0), min(tile, x1 - x0)
        live = [(r, c) for r in tile_starts(y1 - y0, th, p.overlap) for c in tile_starts(x1 - x0, tw, p.overlap)
                if self.tiles.has_tissue(y0 + r, x0 + c, th, tw)]
        if not live:
            return None, None
        pixels = p.preprocess(read_region(self.source, y0, y1, x0, x1), self.source.path, self.value_range)
        self.tiles.passes += len(live)
        labels = predict_tiled_detections(
            p.model, pixels.to(p.device), tile=tile, overlap=p.overlap, batch_size=p.batch_size,
            run_tile=lambda r, c, h, w: self.tiles.has_tissue(y0 + r, x0 + c, h, w), **(p.decoder or {}).get("kwargs", {}),
        )
        return labels, None
