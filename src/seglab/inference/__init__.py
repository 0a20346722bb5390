"""Inference at scale: predictor, sliding windows with blending, TTA, block stitching, writers.

Example:
    >>> from seglab.inference import load_predictor
    >>> predictor = load_predictor("runs/nuclei/best.ckpt", tile=256, tta=True)
    >>> result = predictor.predict(image)          # {"probs", "instances"} or {"probs", "classes"}

``load_predictor`` returns a :class:`Predictor`, or for a Mask R-CNN checkpoint a
:class:`~seglab.inference.detection.DetectionPredictor` (``{"instances"}`` only);
``Predictor.from_checkpoint`` loads every checkpoint but a Mask R-CNN one.

Whole slides: ``open_slide`` (any slide format, read by region and level), ``model_view`` (the
slide at a model's µm/px) and ``detect_tissue``; ``predict_files`` sends slides through the
block pipeline (:mod:`seglab.inference.slide_run`).
"""

from seglab.inference.blocks import BlockGrid, UnionStitcher
from seglab.inference.load import load_predictor
from seglab.inference.predictor import Predictor, adapt_channels, outputs_to_probs, resolve_device
from seglab.inference.runner import Progress, expand_inputs, predict_files
from seglab.inference.slide import SlideSource, open_slide
from seglab.inference.slide_view import model_view
from seglab.inference.sliding import iter_prob_bands, sliding_window_probs, tile_starts, weight_map
from seglab.inference.source import ArraySource, open_image
from seglab.inference.stitch import decode_blockwise, decode_rows_semantic
from seglab.inference.tissue import TissueMask, detect_tissue
from seglab.inference.tta import dihedral_tta
from seglab.inference.writers import output_paths, to_coco, to_geojson, write_outputs

__all__ = [
    "ArraySource",
    "BlockGrid",
    "Predictor",
    "Progress",
    "SlideSource",
    "TissueMask",
    "UnionStitcher",
    "adapt_channels",
    "decode_blockwise",
    "decode_rows_semantic",
    "detect_tissue",
    "dihedral_tta",
    "expand_inputs",
    "iter_prob_bands",
    "load_predictor",
    "model_view",
    "open_image",
    "open_slide",
    "output_paths",
    "outputs_to_probs",
    "predict_files",
    "resolve_device",
    "sliding_window_probs",
    "tile_starts",
    "to_coco",
    "to_geojson",
    "weight_map",
    "write_outputs",
]
