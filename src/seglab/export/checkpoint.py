"""``export_checkpoint``: a seglab checkpoint -> an ONNX or TorchScript file + its JSON sidecar.

The model is rebuilt from the checkpoint, exported (:mod:`seglab.export.onnx`,
:mod:`seglab.export.torchscript`), checked against eager PyTorch on random stride-multiple
inputs (:mod:`seglab.export.verify`), and the sidecar written beside it
(:mod:`seglab.export.sidecar`). A file that fails the check is removed and the export refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seglab.export.graph import ExportError, check_exportable, output_channels, stride
from seglab.export.sidecar import make_sidecar, write_sidecar
from seglab.export.verify import TOLERANCE, detection_difference, max_difference, parity_inputs

FORMATS = ("onnx", "torchscript")


@dataclass
class ExportResult:
    """What an export wrote and how well it matches eager PyTorch."""

    model_file: Path
    sidecar_file: Path
    exporter: str
    max_difference: float
    sidecar: dict[str, Any]


def load_for_export(checkpoint: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's model (eval, CPU, fp32) and its ``seglab`` metadata."""
    from seglab.spec.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)  # both raise DataError naming the file
    return build_model(ckpt, checkpoint).float(), ckpt["seglab"]


def export_model(
    model: torch.nn.Module, meta: dict[str, Any], out: str | os.PathLike[str], *, fmt: str, tile: int,
    source: str | os.PathLike[str] = "<model>",
) -> ExportResult:
    """Export an eval-mode model with its checkpoint metadata; see the module docstring.

    Raises:
        ExportError: the format is unknown, the model cannot be exported to it, or the exported
            file differs from eager PyTorch by more than 1e-4 (the file is then removed).
    """
    from seglab.export.onnx import export_detection_onnx, export_onnx
    from seglab.export.torchscript import export_detection_torchscript, export_torchscript

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    out = Path(out)
    in_channels = int(meta["preprocessing"]["in_channels"])
    name = meta["model"]["name"]
    try:
        if meta.get("method") == "maskrcnn":
            exporter = export_detection_onnx(model, out, in_channels=in_channels) if fmt == "onnx" else export_detection_torchscript(model, out)
            g = torch.Generator().manual_seed(0)
            diff = detection_difference(model, out, torch.rand(in_channels, 72, 88, generator=g))
            channels = None
        else:
            check_exportable(model, name)
            channels = output_channels(model, in_channels)
            names = tuple(channels)
            export = export_onnx if fmt == "onnx" else export_torchscript
            exporter = export(model, out, in_channels=in_channels, names=names)
            diff = max_difference(model, out, parity_inputs(model, in_channels), names)
        if not diff <= TOLERANCE:
            raise ExportError(f"the exported {fmt} model differs from PyTorch by {diff:.3g} (> {TOLERANCE}) on a size other than the trace's")
    except ExportError as exc:
        out.unlink(missing_ok=True)
        raise ExportError(f"{source}: {name} -> {fmt}: {exc}") from None
    sidecar = make_sidecar(meta, fmt=fmt, model_file=out, exporter=exporter, channels=channels, stride=stride(model), tile=tile)
    return ExportResult(out, write_sidecar(out, sidecar), exporter, diff, sidecar)


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, fmt: str, tile: int | None = None) -> ExportResult:
    """Export a seglab checkpoint to ``out`` (ONNX or TorchScript) with its sidecar ``out.json``.

    Args:
        checkpoint: the ``.ckpt`` file.
        out: the model file to write.
        fmt: ``"onnx"`` or ``"torchscript"``.
        tile: the sliding-window tile recorded in the sidecar (default: the checkpoint's patch
            size, at least 256, as ``seglab predict`` uses).
    """
    model, meta = load_for_export(checkpoint)
    tile = tile or max(int(meta.get("patch_size") or 256), 256)
    return export_model(model, meta, out, fmt=fmt, tile=tile, source=checkpoint)
