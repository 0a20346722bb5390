"""The seglab checkpoint: weights plus everything prediction needs, loadable with weights_only.

A checkpoint is a ``torch.save``d dict (Lightning's layout, so ``--resume`` works) with two keys
that seglab reads:

``state_dict``
    model weights, keys prefixed ``model.`` (the LightningModule attribute).
``seglab``
    plain-data metadata (str / int / float / bool / list / dict only, so that
    ``torch.load(weights_only=True)`` accepts it)::

        {
          "format": 1,
          "seglab_version": "0.1.0",
          "task": "instance" | "semantic",
          "method": "three_class" | "distance" | "embedding" | ...,   # how instances are made
          "model": {"name": "unet", "kwargs": {"in_channels": 3, "num_classes": 3, ...},
                    "pretrained_weights": "IMAGENET1K_V1"},   # only if training started from them
          "preprocessing": {"in_channels": 3, "mean": [..], "std": [..]},
          "decoder": {"name": "three_class_watershed", "kwargs": {...}},   # None for semantic
          "classes": ["background", "interior", "boundary"],
          "patch_size": 256,
          "mpp": 0.25,        # µm per pixel of the training images; None (or absent: older
                              # checkpoints) when unknown
        }

Preprocessing is: :func:`seglab.data.io.image_to_tensor` (scale to [0, 1] by dtype), then
``(x - mean) / std`` per channel.

The model's kwargs rebuild it without loading any weights (``pretrained: False``, see
:func:`seglab.models.pretrained.offline_kwargs`): the trained weights are in ``state_dict``, so
prediction never downloads. The weights training started from are kept, for information only,
as ``model.pretrained_weights``. Older checkpoints that record ``pretrained`` are read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from seglab import __version__
from seglab.errors import DataError
from seglab.fileio import atomic_path

CHECKPOINT_FORMAT = 1
REQUIRED_META = ("task", "model", "preprocessing", "decoder")


def make_meta(
    *,
    task: str,
    model_name: str,
    model_kwargs: dict[str, Any],
    preprocessing: dict[str, Any],
    decoder: dict[str, Any] | None,
    method: str | None = None,
    classes: list[str] | None = None,
    patch_size: int | None = None,
    mpp: float | None = None,
) -> dict[str, Any]:
    """Assemble the ``seglab`` metadata block of a checkpoint (``model_kwargs`` as the model was built)."""
    from seglab.models.pretrained import offline_kwargs

    model: dict[str, Any] = {"name": model_name, "kwargs": offline_kwargs(model_name, model_kwargs)}
    if model_kwargs.get("pretrained"):
        model["pretrained_weights"] = model_kwargs["pretrained"]
    return {
        "format": CHECKPOINT_FORMAT,
        "seglab_version": __version__,
        "task": task,
        "method": method,
        "model": model,
        "preprocessing": dict(preprocessing),
        "decoder": None if decoder is None else dict(decoder),
        "classes": list(classes or []),
        "patch_size": patch_size,
        "mpp": None if mpp is None else float(mpp),
    }


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write a minimal inference checkpoint (weights + metadata) atomically."""
    state = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "seglab": meta}, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check it is a seglab one.

    Raises:
        DataError: missing, damaged, or not a seglab checkpoint, or of a ``format`` this seglab
            does not know (written by a newer one). A missing ``format`` reads as format 1.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"damaged or unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(ckpt.get("seglab"), dict):
        raise DataError(path, "not a seglab checkpoint (no 'seglab' metadata)")
    fmt = ckpt["seglab"].get("format", 1)
    if type(fmt) is not int or not 1 <= fmt <= CHECKPOINT_FORMAT:
        newer = " (written by a newer seglab; upgrade seglab to read it)" if type(fmt) is int and fmt > CHECKPOINT_FORMAT else ""
        raise DataError(path, f"unknown checkpoint format {fmt!r}; this seglab reads format 1 to {CHECKPOINT_FORMAT}{newer}")
    missing = [k for k in REQUIRED_META if k not in ckpt["seglab"]]
    if missing:
        raise DataError(path, f"seglab metadata lacks {', '.join(missing)}")
    _upgrade_decoder(ckpt["seglab"])
    ckpt["seglab"]["mpp"] = _checked_mpp(ckpt["seglab"].get("mpp"), path)
    return ckpt


def _checked_mpp(mpp: Any, path: Path) -> float | None:
    """The recorded µm/px (``None`` for checkpoints from before it was recorded)."""
    if mpp is None:
        return None
    if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not (0 < mpp < float("inf")):
        raise DataError(path, f"seglab metadata: mpp must be a positive number of µm per pixel or null, got {mpp!r}")
    return float(mpp)


def _upgrade_decoder(meta: dict[str, Any]) -> None:
    """Keep a checkpoint's decoder decoding as it did when it was written.

    The 3-class watershed's markers were thresholded interiors until h-maxima of the interior
    log-odds became the default; a checkpoint whose decoder names ``interior_threshold`` (set or
    calibrated) and no ``markers`` was tuned for the threshold rule and keeps it.
    """
    decoder = meta.get("decoder") or {}
    kwargs = decoder.get("kwargs")
    if decoder.get("name") != "three_class_watershed" or not isinstance(kwargs, dict) or "markers" in kwargs:
        return
    calibrated = (decoder.get("calibration") or {}).get("option") == "interior_threshold"
    if calibrated or "interior_threshold" in kwargs:
        kwargs["markers"] = "threshold"


def model_state_dict(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's own weights from a checkpoint (``model.`` prefix removed)."""
    prefix = "model."
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def build_model(ckpt: dict[str, Any], path: str | os.PathLike[str] = "<checkpoint>") -> torch.nn.Module:
    """Re-create the model recorded in a checkpoint and load its weights (eval mode).

    Raises:
        DataError: naming ``path``, when the recorded model spec is incomplete or does not build,
            or the weights do not fit it.
    """
    from seglab.errors import SeglabError
    from seglab.models import create_model
    from seglab.models.pretrained import offline_kwargs
    from seglab.models.weights import load_fitting_weights

    spec = ckpt["seglab"]["model"]
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise DataError(path, "seglab metadata: model must be {name: ..., kwargs: {...}}")
    if "num_classes" not in spec["kwargs"]:
        raise DataError(path, f"seglab metadata: model {spec['name']!r} kwargs lack num_classes")
    try:
        model = create_model(spec["name"], **offline_kwargs(spec["name"], spec["kwargs"]))  # never downloads
    except (SeglabError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(path, f"recorded model {spec['name']!r} does not build: {first}") from None
    problem = load_fitting_weights(model, model_state_dict(ckpt))
    if problem:  # one line: counts and the first keys of each kind (PyTorch's message spans many)
        raise DataError(path, f"weights do not fit model {spec['name']!r}: {problem}")
    return model.eval()
