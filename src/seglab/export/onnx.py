"""ONNX export: the TorchScript-based exporter first, the dynamo (``torch.export``) one if it fails.

``torch.onnx.export(..., dynamo=False)`` traces the model once on an example and records every
shape computation (resizes to the encoder's feature size, DeepLab's pooling branch), so height,
width and batch stay dynamic. Layers whose functional form checks sizes in Python with the traced
values (``F.max_unpool2d``, used by ``encdec``'s default SegNet unpooling) make it fail; the
dynamo exporter then captures the graph with symbolic sizes instead. Mask R-CNN exports through
torchvision's ONNX support (one ``C x H x W`` image per call; outputs boxes, labels, scores, masks).

Opset 17. Weights are stored inside the file (models here are at most a few hundred MB).
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from seglab.export.graph import ExportError, NamedOutputs, example_input
from seglab.fileio import atomic_path

OPSET = 17
INPUT_NAME = "image"
DETECTION_OUTPUTS = ("boxes", "labels", "scores", "masks")


def export_onnx(model: nn.Module, out: str | os.PathLike[str], *, in_channels: int, names: tuple[str, ...]) -> str:
    """Write ``model`` (eval mode) as ONNX with dynamic batch, height and width.

    Returns:
        which exporter wrote it: ``"torchscript"`` (``dynamo=False``) or ``"dynamo"``.

    Raises:
        ExportError: neither exporter could convert the model (the first line of each reason).
    """
    with atomic_path(out) as tmp:
        return _export(NamedOutputs(model.eval(), names).eval(), str(tmp), example_input(model, in_channels), names)


def _export(wrapped: nn.Module, out: str, x: torch.Tensor, names: tuple[str, ...]) -> str:
    # the wrapper is in eval mode: the exporter restores the wrapper's mode onto the whole model
    dims = {0: "batch", 2: "height", 3: "width"}
    reasons = []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapped, (x,), out, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=list(names), dynamic_axes={n: dims for n in (INPUT_NAME, *names)},
            )
            return "torchscript"
        except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other one
            reasons.append(f"TorchScript-based exporter: {_first_line(exc)}")
        try:
            dim = torch.export.Dim.AUTO
            program = torch.onnx.export(
                wrapped, (x,), dynamo=True, opset_version=max(OPSET, 18), input_names=[INPUT_NAME],
                output_names=list(names), dynamic_shapes=({0: dim, 2: dim, 3: dim},), verbose=False,
            )
            program.save(out)
            return "dynamo"
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"dynamo exporter: {_first_line(exc)}")
    raise ExportError("cannot export to ONNX: " + "; ".join(reasons))


def export_detection_onnx(model: nn.Module, out: str | os.PathLike[str], *, in_channels: int) -> str:
    """Mask R-CNN as torchvision exports it: one ``C x H x W`` image in, its detections out."""
    x = example_input(model, in_channels)[0]
    with atomic_path(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.eval(), ([x],), str(tmp), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=list(DETECTION_OUTPUTS),
                dynamic_axes={INPUT_NAME: {1: "height", 2: "width"}, **{n: {0: "detections"} for n in DETECTION_OUTPUTS}},
            )
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"cannot export Mask R-CNN to ONNX: {_first_line(exc)}") from None
    return "torchscript"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
