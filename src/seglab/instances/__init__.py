"""Decoders: per-pixel probabilities -> instance label maps.

``decode(name, probs, **kwargs)`` is the one entry point the engine (validation) and the
predictor call. The ``probs`` array is ``C x H x W`` float; its channel convention depends on the
decoder:

=========================  ========================================================================
``three_class_watershed``  ``3 x H x W``: background, interior, boundary probabilities
``distance_watershed``     ``2 x H x W``: channel 0 foreground probability, channel 1 normalised
                           distance (the engine's ``[softmax[:, 1], sigmoid(distance head)]``)
``connected_components``   ``1 x H x W`` foreground probability, or ``C x H x W`` with channel 0
                           the background probability (foreground = ``1 - probs[0]``)
``embedding_meanshift``    ``(1 + E) x H x W``: foreground probability, E embedding channels
                           (:mod:`seglab.instances.embedding`)
``embedding_seeds``        ``(2 + E) x H x W``: foreground probability, seediness, E embeddings
=========================  ========================================================================

Every decoder returns an ``H x W`` int32 map, 0 = background, instances 1..K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seglab.errors import unknown_choice
from seglab.instances.decoders import (
    connected_components,
    distance_watershed,
    fill_label_holes,
    remove_small_instances,
    three_class_watershed,
)


def _three_class(probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    return three_class_watershed(probs, **kwargs)


def _distance(probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    if probs.ndim != 3 or probs.shape[0] != 2:
        raise ValueError(f"distance_watershed expects 2 x H x W [foreground, distance], got {probs.shape}")
    return distance_watershed(probs[1], probs[0], **kwargs)


def _components(probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    if probs.ndim == 2:
        return connected_components(probs, **kwargs)
    foreground = probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]
    return connected_components(foreground, **kwargs)


def _embedding_meanshift(probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    from seglab.instances.embedding import embedding_meanshift  # torch: imported on use

    return embedding_meanshift(probs, **kwargs)


def _embedding_seeds(probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    from seglab.instances.embedding import embedding_seeds

    return embedding_seeds(probs, **kwargs)


# name -> decoder taking the C x H x W probability stack described above
DECODERS: dict[str, Callable[..., np.ndarray]] = {
    "three_class_watershed": _three_class,
    "distance_watershed": _distance,
    "connected_components": _components,
    "embedding_meanshift": _embedding_meanshift,
    "embedding_seeds": _embedding_seeds,
}


def decode(name: str, probs: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Decode a ``C x H x W`` probability stack into an ``H x W`` int32 instance map.

    Args:
        name: one of :data:`DECODERS`.
        probs: the probability stack in the decoder's channel convention (module docstring).
        **kwargs: the decoder's keyword arguments (thresholds, ``min_size``, ``fill_holes``...).

    Raises:
        ConfigError: unknown decoder name (lists the valid ones).
    """
    if name not in DECODERS:
        raise unknown_choice("decoder", name, DECODERS)
    return DECODERS[name](np.asarray(probs, dtype=np.float32), **kwargs)


__all__ = [
    "DECODERS",
    "connected_components",
    "decode",
    "distance_watershed",
    "fill_label_holes",
    "remove_small_instances",
    "three_class_watershed",
]
