"""Run an exported file: ONNX Runtime sessions and TorchScript modules behind one call.

``load_runner(path)`` returns a callable ``x (N x C x H x W float32 tensor) -> tuple of output
tensors`` in the file's output order. The runtime imports (onnxruntime) happen here, lazily.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from seglab.errors import DataError, SeglabError


class OnnxRunner:
    """An ONNX Runtime CPU session; ``threads`` intra-op threads (default: torch's count)."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SeglabError("the onnxruntime backend needs the export extra: pip install 'seglab[export]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
            raise DataError(path, f"not a loadable ONNX model ({type(exc).__name__})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {self.input_name: x.detach().cpu().float().contiguous().numpy()}
        return tuple(torch.from_numpy(a) for a in self.session.run(None, feed))


class TorchScriptRunner:
    """A TorchScript module loaded on CPU (or ``device``)."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> None:
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream; it is the format QuPath reads
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:  # noqa: BLE001
            raise DataError(path, f"not a loadable TorchScript model ({type(exc).__name__})") from None
        self.device = torch.device(device)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            out = self.module(x.to(self.device).float().contiguous())
        return tuple(out) if isinstance(out, tuple | list) else (out,)


def load_runner(path: str | os.PathLike[str], *, device: str | torch.device = "cpu", threads: int | None = None):
    """An :class:`OnnxRunner` for ``.onnx`` files, else a :class:`TorchScriptRunner`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "exported model not found")
    if path.suffix.lower() == ".onnx":
        return OnnxRunner(path, threads=threads)
    return TorchScriptRunner(path, device=device)
