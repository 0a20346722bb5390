"""Export: seglab checkpoints as ONNX or TorchScript files with a JSON sidecar, and int8 ONNX.

Example:
    >>> from seglab.export import export_checkpoint
    >>> result = export_checkpoint("best.ckpt", "nuclei.onnx", fmt="onnx")
    >>> result.sidecar_file          # nuclei.onnx.json: preprocessing, outputs, decoder, µm/px

See :mod:`seglab.export.graph` for what the graph contains (inputs padded to the stride by the
runtime) and :mod:`seglab.export.sidecar` for the sidecar's fields.
"""

from seglab.export.checkpoint import (
    FORMATS,
    ExportResult,
    export_checkpoint,
    export_model,
    load_for_export,
)
from seglab.export.graph import ExportError
from seglab.export.runtime import load_runner
from seglab.export.sidecar import read_sidecar, sidecar_path

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportResult",
    "export_checkpoint",
    "export_model",
    "load_for_export",
    "load_runner",
    "read_sidecar",
    "sidecar_path",
]
