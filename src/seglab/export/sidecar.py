"""The JSON sidecar beside an exported model: everything another program needs to run it.

``model.onnx`` gets ``model.onnx.json`` (:func:`sidecar_path`). It records, as plain data:

* ``input``: name, layout (``NCHW`` float32), channels, ``pad_to`` (height and width must be
  multiples of it: pad bottom/right by reflection, or zeros when the image is smaller than the
  pad, and crop the outputs back, as :func:`seglab.models.base.pad_to_multiple` does);
* ``preprocessing``: the checkpoint's block verbatim (channel count, intensity scaling, mean and
  std) and the steps in words: channel rule, intensity scaling to [0, 1]
  (:mod:`seglab.data.normalize`: ``dataset`` clips to recorded per-channel low/high, ``image`` to
  the image's own percentiles, ``dtype`` divides by the dtype's maximum), then ``(x - mean) / std``;
* ``outputs``: per output its channels, activation and meaning (the decoder's input stack is
  built from them as :func:`seglab.spec.recipes.decoder_input` does);
* ``task``, ``method``, ``classes``, ``decoder`` (name + kwargs), ``mpp`` (µm/px, when the
  checkpoint records it), ``tile`` (the sliding-window size seglab uses), ``patch_size``, the
  model spec, the exporter and any quantization.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from seglab import __version__
from seglab.errors import DataError
from seglab.fileio import write_json_atomic

SIDECAR_FORMAT = 1


def sidecar_path(model_file: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    path = Path(model_file)
    return path.with_name(path.name + ".json")


def _output_meaning(meta: dict[str, Any], channels: dict[str, int]) -> list[dict[str, Any]]:
    from seglab.spec.recipes import make_recipe

    task, method = meta["task"], meta.get("method")
    activations: dict[str, str] = {}
    if task == "instance" and method not in (None, "three_class", "maskrcnn"):
        activations = dict(make_recipe(task, method).aux_activations)
    classes = list(meta.get("classes") or [])
    outputs = []
    for name, k in channels.items():
        if name == "logits":
            act = "softmax over channels" if k > 1 else "sigmoid (foreground)"
            meaning = f"class scores, one channel per class{(': ' + ', '.join(classes)) if classes else ''}"
        else:
            act = activations.get(name, "identity")
            meaning = {"distance": "normalised distance to the instance border", "embedding": "pixel embedding",
                       "seediness": "seed score per pixel"}.get(name, "auxiliary head")
        outputs.append({"name": name, "channels": k, "layout": "NCHW", "activation": act, "meaning": meaning})
    return outputs


def make_sidecar(
    meta: dict[str, Any], *, fmt: str, model_file: str | os.PathLike[str], exporter: str,
    channels: dict[str, int] | None, stride: int, tile: int, quantization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar of an export of a checkpoint with metadata ``meta`` (module docstring).

    ``channels``: output name -> channels; ``None`` for a Mask R-CNN (detection) export.
    """
    pre = dict(meta["preprocessing"])
    detection = channels is None
    sidecar: dict[str, Any] = {
        "seglab_export": SIDECAR_FORMAT,
        "seglab_version": __version__,
        "format": fmt,
        "file": Path(model_file).name,
        "exporter": exporter,
        "task": meta["task"],
        "method": meta.get("method"),
        "classes": list(meta.get("classes") or []),
        "model": meta["model"],
        "input": {
            "name": "image",
            "layout": "CHW, one image per call" if detection else "NCHW",
            "dtype": "float32",
            "channels": int(pre["in_channels"]),
            "dynamic": ["height", "width"] if detection else ["batch", "height", "width"],
            "pad_to": 1 if detection else stride,
            "pad": "none" if detection else "bottom/right to a multiple of pad_to: reflect, or zeros when the image is smaller than the pad; crop outputs back",
        },
        "preprocessing": pre,
        "preprocessing_steps": [
            "channels: drop a trailing alpha channel; repeat a gray image to 3 channels for a 3-channel model",
            "intensity: " + _intensity_words(pre),
            "detection models: the [0, 1] image goes in as it is (the graph normalises)" if detection
            else "then (x - mean) / std per channel",
        ],
        "outputs": [{"name": n, "meaning": m} for n, m in (
            ("boxes", "K x 4 (x0, y0, x1, y1) pixels"), ("labels", "K class ids"), ("scores", "K scores"),
            ("masks", "K x 1 x H x W mask probabilities"))] if detection else _output_meaning(meta, channels),
        "decoder": meta.get("decoder"),
        "mpp": meta.get("mpp"),
        "tile": tile,
        "patch_size": meta.get("patch_size"),
        "quantization": quantization,
    }
    return sidecar


def _intensity_words(pre: dict[str, Any]) -> str:
    mode = (pre.get("intensity") or {"mode": "dtype"})["mode"]
    return {
        "dataset": "clip each channel to preprocessing.intensity low/high, scale to [0, 1]",
        "image": "clip each channel to the image's own preprocessing.intensity percentiles (whole image, not per tile), scale to [0, 1]",
        "dtype": "divide by the dtype's maximum (255 for uint8, 65535 for uint16); floats as they are",
    }[mode]


def write_sidecar(model_file: str | os.PathLike[str], sidecar: dict[str, Any]) -> Path:
    """Write ``sidecar`` beside ``model_file`` atomically; returns its path."""
    path = sidecar_path(model_file)
    write_json_atomic(path, sidecar)
    return path


def read_sidecar(model_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of an exported model.

    Raises:
        DataError: missing or unreadable sidecar, or not a seglab one.
    """
    path = sidecar_path(model_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "sidecar not found (seglab export writes it beside the model file)") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"unreadable sidecar ({type(exc).__name__})") from None
    if not isinstance(data, dict) or "seglab_export" not in data:
        raise DataError(path, "not a seglab export sidecar")
    return data
