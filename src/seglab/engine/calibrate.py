"""Decoder calibration: pick the instance decoder's most sensitive option on the validation set.

A decoder threshold that suits one data set (nucleus size, stain, how far the network trained)
misses on another. As StarDist picks its probability and NMS thresholds after training, seglab
runs the best checkpoint once over the validation images, decodes the cached probabilities with
each value of a small grid and keeps the value of highest mean AJI (the validation monitor);
ties keep the value the run started with. The choice is written into ``best.ckpt``'s decoder
options, so ``seglab predict`` uses it, and the per-value scores go with it under
``decoder["calibration"]``.

One option per decoder (:data:`GRIDS`); an option the user set in ``decoder_kwargs`` is left as
set. Mask R-CNN and the semantic task are not calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# decoder -> (option, candidate values, or multiples of the option's trained default when relative)
GRIDS: dict[str, tuple[str, tuple[float, ...], bool]] = {
    # high thresholds keep only the confident core of each nucleus as its marker, which splits
    # touching nuclei more often (the demo's validation AJI rises steadily from 0.5 to 0.95)
    "three_class_watershed": ("interior_threshold", (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), False),
    "distance_watershed": ("h", (0.05, 0.1, 0.2, 0.3), False),
    "embedding_meanshift": ("bandwidth", (0.75, 1.0, 1.25, 1.5), True),
    "embedding_seeds": ("similarity_threshold", (0.3, 0.4, 0.5, 0.6, 0.7), False),
}
MAX_IMAGES = 16  # validation images whose probabilities are cached (bounds time and memory)


def _signature_default(decoder: str, option: str) -> Any:
    """The default of ``option`` in the decoder function's own signature."""
    import inspect

    from seglab.instances.decoders import distance_watershed, three_class_watershed
    from seglab.instances.embedding import embedding_meanshift, embedding_seeds

    functions = {"three_class_watershed": three_class_watershed, "distance_watershed": distance_watershed,
                 "embedding_meanshift": embedding_meanshift, "embedding_seeds": embedding_seeds}
    return inspect.signature(functions[decoder]).parameters[option].default


def _current_value(decoder: str, option: str, kwargs: dict[str, Any]) -> float:
    if option in kwargs:
        return float(kwargs[option])
    if option == "bandwidth":  # embedding_meanshift's default follows the trained pull margin
        from seglab.instances.embedding import default_bandwidth

        return default_bandwidth(kwargs.get("delta_v", _signature_default(decoder, "delta_v")))
    return float(_signature_default(decoder, option))


def candidates(decoder: str, kwargs: dict[str, Any]) -> tuple[str, list[float]] | None:
    """The option to calibrate and its values (the current value first), or None."""
    if decoder not in GRIDS:
        return None
    option, grid, relative = GRIDS[decoder]
    current = _current_value(decoder, option, kwargs)
    values = [round(current * g, 6) for g in grid] if relative else list(grid)
    return option, [current] + [v for v in values if not np.isclose(v, current)]


def choose(decoder: str, kwargs: dict[str, Any], stacks: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, Any]:
    """Score every candidate on the cached decoder inputs; the best value and all scores.

    Returns:
        ``{"option": name, "value": best, "scores": {value: mean AJI}, "images": n}``.
    """
    from seglab.instances import decode
    from seglab.metrics import InstanceMetrics

    option, values = candidates(decoder, kwargs)  # type: ignore[misc]
    scores = {}
    for value in values:
        metrics = InstanceMetrics()
        for stack, truth in zip(stacks, truths, strict=True):
            metrics.update(truth, decode(decoder, stack, **{**kwargs, option: value}))
        scores[value] = float(metrics.compute()["mean"]["aji"])
    best = max(values, key=lambda v: (scores[v], v == values[0]))  # ties keep the current value
    return {"option": option, "value": best, "scores": scores, "images": len(stacks)}


def calibrate_checkpoint(
    checkpoint: str | Path, samples: Sequence[Any], *, user_kwargs: dict[str, Any], tile: int | None,
    device: str = "cpu",
) -> dict[str, Any] | None:
    """Calibrate ``checkpoint``'s decoder on validation ``samples`` and rewrite it atomically.

    Args:
        checkpoint: the run's ``best.ckpt``.
        samples: validation samples (``image`` and ``label`` paths), at most :data:`MAX_IMAGES` used.
        user_kwargs: the run's ``decoder_kwargs``; an option set there is not calibrated.
        tile: sliding-window tile for the validation images (None = whole images).
        device: where the model runs.

    Returns:
        The calibration record (see :func:`choose`), or None when there is nothing to calibrate.
    """
    import torch

    from seglab.data.io import read_image, read_label
    from seglab.engine.checkpoint import build_model, load_checkpoint
    from seglab.fileio import atomic_path
    from seglab.inference import Predictor

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["seglab"]
    decoder = meta.get("decoder") or {}
    if meta.get("task") != "instance" or decoder.get("name") not in GRIDS or not samples:
        return None
    if GRIDS[decoder["name"]][0] in user_kwargs:
        return None
    predictor = Predictor(build_model(ckpt, checkpoint), meta, tile=tile, device=device)  # no second read
    chosen = list(samples)[:MAX_IMAGES]
    stacks = [predictor.predict_probs(read_image(s.image)) for s in chosen]
    truths = [read_label(s.label) for s in chosen]
    record = choose(decoder["name"], dict(decoder.get("kwargs") or {}), stacks, truths)
    decoder.setdefault("kwargs", {})[record["option"]] = record["value"]
    decoder["calibration"] = {**record, "scores": {str(k): v for k, v in record["scores"].items()}}
    with atomic_path(checkpoint, durable=True) as tmp:
        torch.save(ckpt, tmp)
    return record
