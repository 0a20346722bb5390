"""Panoptic fusion: an instance map and per-pixel class probabilities -> one panoptic result.

* **Things** (HoVer-Net's vote, Graham et al. 2019, with probabilities instead of arg-max
  votes): each instance takes the thing class with the highest class probability summed over its
  pixels; its ``type_prob`` is the winner's share of that sum over the thing classes.
* **Stuff**: every pixel outside the instances takes the arg-max among the stuff classes.
* **Overlaps and small stuff** (Kirillov et al. 2019, the panoptic baseline's heuristic): the
  instances are placed first and never overlap (one instance map), stuff only fills what they
  leave; a stuff class covering fewer than ``min_stuff_area`` pixels of the image is removed
  (void, 255), as panopticapi treats stuff as one segment per class and image.

Shape: ``instances`` ``H x W`` (0 = none), ``class_probs`` ``K x H x W`` (soft-max over all
classes, stuff and things).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VOID = 255
MIN_STUFF_AREA = 128  # pixels; Kirillov et al. used 4096 on COCO's ~640 x 480 images (~1.3 %)


@dataclass
class PanopticResult:
    """``classes`` H x W (uint8; 255 void), ``instances`` H x W int32, and per instance id its
    ``instance_class`` and ``type_prob`` (dicts)."""

    classes: np.ndarray
    instances: np.ndarray
    instance_class: dict[int, int]
    type_prob: dict[int, float]


def instance_class_votes(instances: np.ndarray, class_probs: np.ndarray, things: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed probability of each thing class over each instance: ``(ids, winner class, share)``."""
    ids = np.unique(instances[instances > 0])
    if len(ids) == 0:
        return ids, np.zeros(0, np.int64), np.zeros(0)
    dense = np.searchsorted(ids, instances.ravel())  # index of each pixel's instance (garbage where 0)
    on = instances.ravel() > 0
    sums = np.stack([np.bincount(dense[on], weights=class_probs[t].ravel()[on], minlength=len(ids)) for t in things], 1)
    best = sums.argmax(1)
    total = np.maximum(sums.sum(1), 1e-12)
    return ids, np.asarray(things, np.int64)[best], sums[np.arange(len(ids)), best] / total


def fuse_panoptic(instances: np.ndarray, class_probs: np.ndarray, *, things: Sequence[int], stuffs: Sequence[int],
                  min_stuff_area: int = MIN_STUFF_AREA) -> PanopticResult:
    """Fuse instances and class probabilities (see the module docstring).

    Args:
        instances: ``H x W`` instance ids.
        class_probs: ``K x H x W`` probabilities of every class.
        things, stuffs: the thing and stuff class indices (disjoint, within ``0..K-1``).
        min_stuff_area: a stuff class with fewer pixels in the image becomes void (255).

    Returns:
        :class:`PanopticResult`.
    """
    instances = np.asarray(instances)
    if class_probs.shape[1:] != instances.shape:
        raise ValueError(f"class probabilities {class_probs.shape} do not match instances {instances.shape}")
    ids, winner, share = instance_class_votes(instances, class_probs, list(things))
    stuffs = np.asarray(list(stuffs), np.int64)
    classes = stuffs[np.argmax(class_probs[stuffs], 0)]
    outside = instances == 0
    area = np.bincount(classes[outside], minlength=int(class_probs.shape[0]))
    small = np.zeros(len(area), bool)
    small[stuffs] = area[stuffs] < min_stuff_area
    classes = np.where(outside & small[classes], VOID, classes)
    if len(ids):
        lut = np.zeros(int(ids.max()) + 1, np.int64)
        lut[ids] = winner
        classes = np.where(outside, classes, lut[instances])
    return PanopticResult(
        classes=classes.astype(np.uint8),
        instances=instances.astype(np.int32, copy=False),
        instance_class={int(i): int(c) for i, c in zip(ids, winner, strict=True)},
        type_prob={int(i): float(p) for i, p in zip(ids, share, strict=True)},
    )
