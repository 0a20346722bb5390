"""int8 post-training quantization of an exported ONNX model for CPUs (ONNX Runtime, static).

``onnxruntime.quantization.quantize_static`` in QDQ format, weights int8 per output channel,
activations uint8 with ranges calibrated (min-max) on tiles of the user's images, preprocessed
exactly as the predictor preprocesses them (:meth:`seglab.inference.Predictor.preprocess`).
:func:`compare_int8` then predicts the labelled images with the fp32 and the int8 file through
the whole predictor (tiles, blending, decoder) and reports the mean AJI and PQ of each.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import DataError, SeglabError

CALIBRATION_TILES = 32  # tiles the activation ranges are calibrated on


def calibration_samples(folder: str | os.PathLike[str]) -> list[tuple[Path, Path | None]]:
    """``(image, label or None)`` pairs: a folder data set (``DIR/images`` + ``DIR/labels``) or a folder of images."""
    from seglab.data.dataset import find_samples

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "--calibration must be a folder of images (or DIR/images + DIR/labels)")
    if (folder / "images").is_dir():
        return [(s.image, s.label) for s in find_samples(folder, require_labels=False)]
    from seglab.inference import expand_inputs

    return [(p, None) for p in expand_inputs(folder)]


def calibration_tiles(predictor: Any, images: list[Path], *, tile: int, stride: int, limit: int = CALIBRATION_TILES) -> list[np.ndarray]:
    """Up to ``limit`` preprocessed ``1 x C x t x t`` tiles (``t`` = ``tile`` rounded up to the stride), from all images in turn."""
    from seglab.data.io import read_image
    from seglab.models.base import pad_to_multiple

    side = -(-tile // stride) * stride
    per_image = [_tiles_of(predictor, read_image(p), p, side, pad_to_multiple, stride) for p in images]
    out: list[np.ndarray] = []
    while len(out) < limit and any(per_image):
        for tiles in per_image:
            if tiles and len(out) < limit:
                out.append(tiles.pop(0))
    return out


def _tiles_of(predictor: Any, image: np.ndarray, path: Path, side: int, pad, stride: int) -> list[np.ndarray]:
    import torch

    x = predictor.preprocess(image if image.ndim == 3 else image[..., None], path)[None]
    h, w = x.shape[-2:]
    tiles = []
    for y in range(0, max(h - side, 0) + 1, side):
        for x0 in range(0, max(w - side, 0) + 1, side):
            crop = x[..., y:y + side, x0:x0 + side]
            tiles.append(pad(crop, stride).numpy().astype(np.float32))
    return tiles or [pad(torch.as_tensor(x), stride).numpy()]


def quantize_int8(fp32_file: str | os.PathLike[str], out: str | os.PathLike[str], tiles: list[np.ndarray]) -> dict[str, Any]:
    """Write the int8 (QDQ) version of ``fp32_file`` to ``out``; returns the sidecar's ``quantization`` block."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise SeglabError("int8 quantization needs the export extra: pip install 'seglab[export]'") from None
    if not tiles:
        raise SeglabError("--calibration: no calibration tiles")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"image": t} for t in tiles])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    from seglab.fileio import atomic_path

    with tempfile.TemporaryDirectory(prefix="seglab-int8-") as work, atomic_path(out) as tmp:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_file), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    return {"type": "int8", "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations (min-max)",
            "calibration_tiles": len(tiles), "calibration_tile_shape": list(tiles[0].shape)}


def compare_int8(checkpoint: str | os.PathLike[str], fp32_file: Path, int8_file: Path,
                 samples: list[tuple[Path, Path | None]], *, tile: int) -> dict[str, float] | None:
    """Mean AJI and PQ over the labelled ``samples`` with the fp32 and the int8 file (``None`` without labels)."""
    from seglab.data.dataset import read_sample
    from seglab.data.io import Sample
    from seglab.inference import load_predictor
    from seglab.metrics import aji, panoptic_quality

    labelled = [(i, lab) for i, lab in samples if lab is not None]
    if not labelled:
        return None
    scores: dict[str, list[float]] = {"aji_fp32": [], "aji_int8": [], "pq_fp32": [], "pq_int8": []}
    predictors = {kind: load_predictor(checkpoint, tile=tile, backend="onnxruntime", model_file=f)
                  for kind, f in (("fp32", fp32_file), ("int8", int8_file))}
    for image_path, label_path in labelled:
        image, label = read_sample(Sample(image_path.stem, image_path, label_path))
        for kind, predictor in predictors.items():
            pred = predictor.predict(image)["instances"]
            scores[f"aji_{kind}"].append(aji(label, pred))
            scores[f"pq_{kind}"].append(panoptic_quality(label, pred)["pq"])
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    result["images"] = len(labelled)
    return result


def export_int8(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], calibration: str | os.PathLike[str],
                *, tile: int | None = None) -> tuple[Any, dict[str, float] | None]:
    """Export ``checkpoint`` to ONNX, quantize it to int8 into ``out`` (+ sidecar), compare with fp32.

    Returns:
        ``(ExportResult of the int8 file, compare_int8's scores or None)``.
    """
    from seglab.export.checkpoint import ExportResult, export_model, load_for_export
    from seglab.export.graph import stride
    from seglab.export.sidecar import write_sidecar
    from seglab.inference import Predictor

    samples = calibration_samples(calibration)
    model, meta = load_for_export(checkpoint)
    tile = tile or max(int(meta.get("patch_size") or 256), 256)
    predictor = Predictor(model, meta)
    tiles = calibration_tiles(predictor, [i for i, _ in samples], tile=tile, stride=stride(model))
    with tempfile.TemporaryDirectory(prefix="seglab-fp32-") as work:
        fp32 = export_model(model, meta, Path(work) / "fp32.onnx", fmt="onnx", tile=tile, source=checkpoint)
        quantization = quantize_int8(fp32.model_file, out, tiles)
        sidecar = {**fp32.sidecar, "file": Path(out).name, "quantization": quantization}
        result = ExportResult(Path(out), write_sidecar(out, sidecar), fp32.exporter, float("nan"), sidecar)
        scores = compare_int8(checkpoint, fp32.model_file, Path(out), samples, tile=tile)
    return result, scores
