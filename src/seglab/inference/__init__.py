"""Inference at scale: predictor, sliding windows with blending, TTA, block stitching, writers.

Example:
    >>> from seglab.inference import Predictor
    >>> predictor = Predictor.from_checkpoint("runs/nuclei/best.ckpt", tile=256, tta=True)
    >>> result = predictor.predict(image)          # {"probs", "instances"} or {"probs", "classes"}
"""

from seglab.inference.predictor import Predictor, adapt_channels, outputs_to_probs, resolve_device
from seglab.inference.runner import Progress, expand_inputs, predict_files
from seglab.inference.sliding import iter_prob_bands, sliding_window_probs, tile_starts, weight_map
from seglab.inference.source import ArraySource, open_image
from seglab.inference.stitch import BlockStitcher, decode_blockwise, decode_rows_semantic
from seglab.inference.tta import dihedral_tta
from seglab.inference.writers import output_paths, to_coco, to_geojson, write_outputs

__all__ = [
    "ArraySource",
    "BlockStitcher",
    "Predictor",
    "Progress",
    "adapt_channels",
    "decode_blockwise",
    "decode_rows_semantic",
    "dihedral_tta",
    "expand_inputs",
    "iter_prob_bands",
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
