"""Runtime backends: the model call of a :class:`~seglab.inference.predictor.Predictor`.

``torch`` calls the eager model. ``onnxruntime`` and ``torchscript`` call an exported file
(:mod:`seglab.export`) through :class:`ExportedModel`, which pads each batch of tiles to the
graph's stride and crops the outputs back exactly as the eager model's ``forward`` does, and
returns what the eager model returns (logits, or a dict of named outputs). Everything around the
call (sliding windows, blending, TTA, decoding) is the predictor's, so slides and TTA run on
every backend alike.

Without ``model_file`` the checkpoint is exported once into a cache folder beside it,
``<checkpoint stem>.export/`` (or the user cache folder when that is not writable), keyed by the
checkpoint's content hash, and reused while the checkpoint is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from seglab.errors import DataError, SeglabError, unknown_choice
from seglab.models.base import pad_to_multiple

BACKENDS = ("torch", "onnxruntime", "torchscript")
FORMAT_OF = {"onnxruntime": "onnx", "torchscript": "torchscript"}
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportedModel:
    """An exported segmentation model called like the eager one: ``x -> logits | {name: tensor}``."""

    def __init__(self, model_file: str | os.PathLike[str], sidecar: dict[str, Any]) -> None:
        from seglab.export import load_runner

        self.runner = load_runner(model_file)
        self.names = tuple(o["name"] for o in sidecar["outputs"])
        self.pad_to = int(sidecar["input"]["pad_to"])
        self.model_file = Path(model_file)

    def __call__(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        outs = self.runner(pad_to_multiple(x.float().cpu(), self.pad_to))
        outs = [o[..., :h, :w] for o in outs]
        return outs[0] if len(outs) == 1 else dict(zip(self.names, outs, strict=True))


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the checkpoint file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cache_folder(checkpoint: str | os.PathLike[str]) -> Path:
    """``<stem>.export/`` beside the checkpoint, or ``~/.cache/seglab/export`` if that cannot be written."""
    beside = Path(checkpoint).with_name(Path(checkpoint).stem + ".export")
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seglab" / "export"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cached_export(checkpoint: str | os.PathLike[str], backend: str, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """The checkpoint exported for ``backend``, from the cache or exported now (see module docstring)."""
    from seglab.export import export_model, sidecar_path

    fmt = FORMAT_OF[backend]
    out = cache_folder(checkpoint) / f"{Path(checkpoint).stem}-{checkpoint_digest(checkpoint)}{SUFFIX[fmt]}"
    if not (out.is_file() and sidecar_path(out).is_file()):
        tile = max(int(meta.get("patch_size") or 256), 256)
        export_model(model, meta, out, fmt=fmt, tile=tile, source=checkpoint)
    return out


def load_backend(
    backend: str, model: torch.nn.Module, meta: dict[str, Any], *, model_file: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> torch.nn.Module | ExportedModel:
    """The callable a predictor runs tiles through, for ``backend`` (module docstring).

    Args:
        backend: ``torch`` | ``onnxruntime`` | ``torchscript``.
        model: the eager model (used by ``torch``, and to export when no file is given).
        meta: the checkpoint's metadata.
        model_file: an exported file (``seglab export``) to run; its sidecar must describe the
            same model as ``meta``.
        checkpoint: where the checkpoint lives, for the export cache; ``None`` exports into a
            temporary folder.

    Raises:
        SeglabError: unknown backend, or a Mask R-CNN checkpoint (exported backends run
            per-pixel models only).
        DataError: a model file of the wrong format, without its sidecar, or of another model.
    """
    if backend not in BACKENDS:
        raise unknown_choice("backend", backend, BACKENDS)
    if backend == "torch":
        if model_file is not None:
            raise SeglabError("--model-file needs --backend onnxruntime or torchscript")
        return model
    if meta.get("method") == "maskrcnn":
        raise SeglabError(f"Mask R-CNN checkpoints predict with --backend torch only (seglab export writes {FORMAT_OF[backend]} for other programs)")
    from seglab.export import read_sidecar

    if model_file is None:
        if checkpoint is None:
            import tempfile

            checkpoint = Path(tempfile.mkdtemp(prefix="seglab-export-")) / "model.ckpt"
            from seglab.spec.checkpoint import save_checkpoint

            save_checkpoint(checkpoint, model, meta)
        model_file = cached_export(checkpoint, backend, model, meta)
    sidecar = read_sidecar(model_file)
    if sidecar.get("format") != FORMAT_OF[backend]:
        raise DataError(model_file, f"is a {sidecar.get('format')} export; --backend {backend} runs {FORMAT_OF[backend]} files")
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 - tuples vs JSON lists
    if not same(sidecar.get("model"), meta["model"]) or not same(sidecar.get("preprocessing"), meta["preprocessing"]):
        raise DataError(model_file, "was exported from another model than the checkpoint (its sidecar's model or preprocessing differ)")
    return ExportedModel(model_file, sidecar)
