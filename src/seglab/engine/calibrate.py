"""Decoder calibration: pick the instance decoder's most sensitive option on the validation set.

A decoder threshold that suits one data set (nucleus size, stain, how far the network trained)
misses on another. As StarDist picks its probability and NMS thresholds after training, seglab
runs the best checkpoint once over the validation images, decodes the cached probabilities with
each value of a small grid and keeps the value of highest mean AJI (the validation monitor);
ties keep the value the run started with. A grid only brackets the optimum when the best value is
inside it: when it wins at an edge, the search walks on past that edge (:func:`extend`) while the
score keeps rising, with growing steps that halve the distance to a bounded option's limit
(0.95 -> 0.975 -> 0.9875 for a probability) and grow geometrically for an unbounded one, then
tries the midpoints between the best value and its neighbours once. The choice is written into
``best.ckpt``'s decoder options, so ``seglab predict`` uses it, and the per-value scores go with it
under ``decoder["calibration"]``.

One option per decoder (:data:`GRIDS`; :data:`THRESHOLD_MARKERS` for the 3-class watershed run with
``markers="threshold"``); an option the user set in ``decoder_kwargs`` is left as set. A panoptic
model is calibrated on its 3-class instance channels; Mask R-CNN and the semantic task are not
calibrated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# decoder -> (option, candidate values, or multiples of the option's trained default when relative)
GRIDS: dict[str, tuple[str, tuple[float, ...], bool]] = {
    # the h-maxima markers' dynamic in log-odds units; 1-2.5 won on every data set measured
    "three_class_watershed": ("h", (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0), False),
    "distance_watershed": ("h", (0.05, 0.1, 0.2, 0.3), False),
    "embedding_meanshift": ("bandwidth", (0.75, 1.0, 1.25, 1.5), True),
    "embedding_seeds": ("similarity_threshold", (0.3, 0.4, 0.5, 0.6, 0.7), False),
}
# decoder -> the option's valid open interval (lower, upper); None = unbounded
RANGES: dict[str, tuple[float, float | None]] = {
    "three_class_watershed": (0.0, None),  # log-odds
    "distance_watershed": (0.0, 1.0),  # h on a distance normalised to [0, 1]
    "embedding_meanshift": (0.0, None),
    "embedding_seeds": (0.0, 1.0),  # the pair similarity lies in (0, 1]
}
# three_class_watershed with markers="threshold" calibrates its threshold (a probability) instead:
# the threshold that splits touching nuclei sits near the top (0.95 and above), hence the range
THRESHOLD_MARKERS = ("interior_threshold", (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), False)
MAX_IMAGES = 16  # validation images whose probabilities are cached (bounds time and memory)
MAX_STEPS = 6  # values tried past a grid edge (each decodes the cached images once)
MIN_GAP = 1e-3  # a bounded option stops this close to its limit


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


def grid(decoder: str, kwargs: dict[str, Any]) -> tuple[str, tuple[float, ...], bool, tuple[float, float | None]] | None:
    """``(option, values, relative, valid range)`` calibrated for ``decoder`` run with ``kwargs``, or None."""
    if decoder not in GRIDS:
        return None
    if decoder == "three_class_watershed" and kwargs.get("markers") == "threshold":
        return (*THRESHOLD_MARKERS, (0.0, 1.0))
    return (*GRIDS[decoder], RANGES[decoder])


def candidates(decoder: str, kwargs: dict[str, Any]) -> tuple[str, list[float]] | None:
    """The option to calibrate and its values (the current value first), or None."""
    entry = grid(decoder, kwargs)
    if entry is None:
        return None
    option, values, relative, _ = entry
    current = _current_value(decoder, option, kwargs)
    values = [round(current * g, 6) for g in values] if relative else list(values)
    return option, [current] + [v for v in values if not np.isclose(v, current)]


def _beyond(edge: float, step: float, bounds: tuple[float, float | None], up: bool) -> float | None:
    """The next value past ``edge``: ``step`` further, at most half way to the bound; None at it."""
    lower, upper = bounds
    gap = (upper - edge if upper is not None else np.inf) if up else edge - lower
    step = min(step, gap / 2)
    if step <= 0 or gap < MIN_GAP:
        return None
    return round(edge + step if up else edge - step, 6)


def extend(score: Callable[[float], float], values: Sequence[float], bounds: tuple[float, float | None],
           current: float) -> None:
    """Search past the grid's edge when the best value sits on it; ``score`` caches what it scores.

    From the winning edge, step outwards (the grid's last spacing, doubling each time, never more
    than half the way to a bound) while the score strictly improves, at most :data:`MAX_STEPS`
    times; then score the midpoints between the best value and its two neighbours once (the
    optimum lies between them). A grid whose best value is inside it is left alone: its spacing
    already brackets the optimum. Ties never move the choice (``current`` wins them, see
    :func:`choose`), so a value tried here only wins by scoring strictly higher.
    """
    ordered = sorted(values)
    best = max(values, key=lambda v: (score(v), v == current))
    if len(ordered) < 2 or best not in (ordered[0], ordered[-1]):
        return
    up = best == ordered[-1]
    edge, step = best, abs(ordered[-1] - ordered[-2]) if up else abs(ordered[1] - ordered[0])
    tried = set(ordered)
    for _ in range(MAX_STEPS):
        nxt = _beyond(edge, step, bounds, up)
        if nxt is None:
            break
        tried.add(nxt)
        if score(nxt) <= score(edge):
            break
        edge, step = nxt, 2 * step
    near = sorted(tried)
    i = near.index(edge)
    for j in (i - 1, i + 1):
        if 0 <= j < len(near):
            score(round((edge + near[j]) / 2, 6))


def choose(decoder: str, kwargs: dict[str, Any], stacks: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, Any]:
    """Score every candidate on the cached decoder inputs, search past a winning edge (:func:`extend`);
    the best value and all scores.

    Returns:
        ``{"option": name, "value": best, "scores": {value: mean AJI}, "images": n}``, the scores in
        the order tried (the current value first).
    """
    from seglab.instances import decode
    from seglab.metrics import InstanceMetrics

    option, values = candidates(decoder, kwargs)  # type: ignore[misc]
    scores: dict[float, float] = {}

    def score(value: float) -> float:
        if value not in scores:
            metrics = InstanceMetrics()
            for stack, truth in zip(stacks, truths, strict=True):
                metrics.update(truth, decode(decoder, stack, **{**kwargs, option: value}))
            scores[value] = float(metrics.compute()["mean"]["aji"])
        return scores[value]

    for value in values:
        score(value)
    extend(score, values, grid(decoder, kwargs)[3], values[0])  # type: ignore[index]
    best = max(scores, key=lambda v: (scores[v], v == values[0]))  # ties keep the current value
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
    from seglab.fileio import atomic_path
    from seglab.inference import Predictor
    from seglab.spec.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["seglab"]
    decoder = meta.get("decoder") or {}
    if meta.get("task") not in ("instance", "panoptic") or decoder.get("name") not in GRIDS or not samples:
        return None
    if grid(decoder["name"], {**(decoder.get("kwargs") or {}), **user_kwargs})[0] in user_kwargs:  # type: ignore[index]
        return None
    predictor = Predictor(build_model(ckpt, checkpoint), meta, tile=tile, device=device)  # no second read
    chosen = list(samples)[:MAX_IMAGES]
    # a panoptic model's first three channels are its 3-class instance head; the class head follows
    channels = slice(0, 3) if meta["task"] == "panoptic" else slice(None)
    stacks = [predictor.predict_probs(read_image(s.image))[channels] for s in chosen]
    truths = [read_label(s.label) for s in chosen]
    record = choose(decoder["name"], dict(decoder.get("kwargs") or {}), stacks, truths)
    decoder.setdefault("kwargs", {})[record["option"]] = record["value"]
    decoder["calibration"] = {**record, "scores": {str(k): v for k, v in record["scores"].items()}}
    with atomic_path(checkpoint, durable=True) as tmp:
        torch.save(ckpt, tmp)
    return record
