"""Segmentation metrics: pixel (confusion matrix), boundary F1, instance (AJI, AJI+, PQ, F1) and panoptic.

Everything is vectorised (bincount over paired labels) and accepts numpy arrays or torch
tensors. Data-set figures exist as the mean over images and pooled over all images; see
:mod:`seglab.metrics.aggregate`.
"""

from seglab.metrics.aggregate import InstanceMetrics
from seglab.metrics.boundary import boundary_f1
from seglab.metrics.evaluate import evaluate_folders, format_table
from seglab.metrics.instance import aji, aji_plus, foreground_dice, object_f1, panoptic_quality
from seglab.metrics.overlap import Overlaps, pair_overlaps
from seglab.metrics.panoptic import (
    NucleusTypeMetrics,
    PanopticMetrics,
    panoptic_counts,
    panoptic_scores,
)
from seglab.metrics.pixel import ConfusionMatrix, confusion_matrix, scores_from_matrix

__all__ = [
    "ConfusionMatrix",
    "InstanceMetrics",
    "NucleusTypeMetrics",
    "Overlaps",
    "PanopticMetrics",
    "aji",
    "aji_plus",
    "boundary_f1",
    "confusion_matrix",
    "evaluate_folders",
    "foreground_dice",
    "format_table",
    "object_f1",
    "pair_overlaps",
    "panoptic_counts",
    "panoptic_quality",
    "panoptic_scores",
    "scores_from_matrix",
]
