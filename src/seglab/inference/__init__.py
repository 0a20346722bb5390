"""Inference at scale: predictor, sliding windows with blending, TTA, block stitching, writers.

Example:
    >>> from seglab.inference import load_predictor
    >>> predictor = load_predictor("runs/nuclei/best.ckpt", tile=256, tta=True)
    >>> result = predictor.predict(image)          # {"probs", "instances"} or {"probs", "classes"}

``load_predictor`` returns a :class:`Predictor`, or for a Mask R-CNN checkpoint a
:class:`~seglab.inference.detection.DetectionPredictor` (``{"instances"}`` only);
``Predictor.from_checkpoint`` loads every checkpoint but a Mask R-CNN one.
"""

from seglab.inference.blocks import BlockGrid, UnionStitcher
from seglab.inference.load import load_predictor
from seglab.inference.predictor import Predictor, adapt_channels, outputs_to_probs, resolve_device
from seglab.inference.runner import Progress, expand_inputs, predict_files
from seglab.inference.sliding import iter_prob_bands, sliding_window_probs, tile_starts, weight_map
from seglab.inference.source import ArraySource, open_image
from seglab.inference.stitch import decode_blockwise, decode_rows_semantic
from seglab.inference.tta import dihedral_tta
from seglab.inference.writers import output_paths, to_coco, to_geojson, write_outputs

__all__ = [
    "ArraySource",
    "BlockGrid",
    "Predictor",
    "Progress",
    "UnionStitcher",
    "adapt_channels",
    "decode_blockwise",
    "decode_rows_semantic",
    "dihedral_tta",
    "expand_inputs",
    "iter_prob_bands",
    "load_predictor",
    "open_image",
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
