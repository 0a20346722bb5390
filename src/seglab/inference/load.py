"""A checkpoint loaded as the predictor it asks for.

Mask R-CNN checkpoints predict detections (:class:`~seglab.inference.detection.DetectionPredictor`),
every other checkpoint per-pixel probabilities (:class:`~seglab.inference.predictor.Predictor`).
The choice is made here, above both, so that the detection predictor builds on the plain one
(``detection`` imports ``predictor``) and the plain one needs to know nothing of it.
"""

from __future__ import annotations

import os
from typing import Any

from seglab.inference.detection import DetectionPredictor
from seglab.inference.predictor import Predictor, is_detection_checkpoint, load_model


def load_predictor(path: str | os.PathLike[str], *, task: str | None = None, **kwargs: Any) -> Predictor:
    """Load a seglab checkpoint (``weights_only``) as a :class:`Predictor` or a :class:`DetectionPredictor`.

    Args:
        path: the ``.ckpt`` file.
        task: when given, refuse a checkpoint of another task.
        **kwargs: predictor options (device, tta, tile, backend, model_file, ...).

    Raises:
        DataError: as :func:`seglab.inference.predictor.load_model`.
    """
    model, meta = load_model(path, task=task)
    cls = DetectionPredictor if is_detection_checkpoint(meta) else Predictor
    return cls(model, meta, checkpoint=path, **kwargs)
