"""TorchScript export (QuPath, DJL, libtorch): traced segmentation models, scripted Mask R-CNN.

A segmentation model is traced once on a stride-multiple example (see :mod:`seglab.export.graph`)
and frozen; the trace records the shape computations, so batch, height and width stay dynamic.
``F.max_unpool2d`` checks its output size in Python with traced values, so ``encdec`` with SegNet
unpooling cannot be traced: ONNX (through the dynamo exporter) takes it instead. Mask R-CNN is
scripted as torchvision supports, with seglab's native-resolution transform swapped for a typed
copy of itself (TorchScript needs the annotations); it returns ``(losses, detections)``.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Dict, Tuple  # noqa: UP035 - TorchScript reads these annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from seglab.export.graph import ExportError, NamedOutputs, example_input
from seglab.fileio import atomic_path


def export_torchscript(model: nn.Module, out: str | os.PathLike[str], *, in_channels: int, names: tuple[str, ...]) -> str:
    """Trace, freeze and save ``model``; returns ``"trace"``.

    Raises:
        ExportError: the model cannot be traced (first line of the reason).
    """
    wrapped = NamedOutputs(model.eval(), names).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(wrapped, example_input(model, in_channels), check_trace=False))
    except Exception as exc:  # noqa: BLE001 - any tracer failure is a one-line refusal
        raise ExportError(f"cannot trace to TorchScript ({_why(exc)}); export to ONNX instead") from None
    with atomic_path(out) as tmp:
        traced.save(str(tmp))
    return "trace"


class _TypedNativeTransform(GeneralizedRCNNTransform):
    """seglab's native-resolution transform (no resize), annotated for TorchScript."""

    def resize(self, image: Tensor, target: Dict[str, Tensor] | None = None) -> Tuple[Tensor, Dict[str, Tensor] | None]:  # noqa: UP006, UP007
        return image, target


def export_detection_torchscript(model: nn.Module, out: str | os.PathLike[str]) -> str:
    """Script a Mask R-CNN model; returns ``"script"``."""
    scriptable = copy.deepcopy(model).eval()
    typed = _TypedNativeTransform.__new__(_TypedNativeTransform)
    typed.__dict__.update(scriptable.transform.__dict__)
    scriptable.transform = typed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(scriptable)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot script Mask R-CNN to TorchScript ({_why(exc)})") from None
    with atomic_path(out) as tmp:
        scripted.save(str(tmp))
    return "script"


def _why(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
