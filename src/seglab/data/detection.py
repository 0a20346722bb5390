"""Instance maps -> detection targets for Mask R-CNN (torchvision's target format).

torchvision's detection models train on one dict per image::

    {"boxes": K x 4 float32 (x1, y1, x2, y2), "labels": K int64, "masks": K x H x W uint8}

Boxes are in continuous pixel coordinates: an instance occupying columns ``c0 .. c1`` (inclusive)
has ``x1 = c0`` and ``x2 = c1 + 1`` (the slice stop, as in COCO's ``[x, y, w, h]``), so even a
one-pixel instance has a box of positive size, which torchvision requires. An image without
instances gives empty tensors of shapes ``(0, 4)``, ``(0,)`` and ``(0, H, W)``, which torchvision
accepts (every proposal is then background).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi


def _dense(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber ids to 1..K in increasing order of the original ids (0 stays background)."""
    ids = np.unique(instances)
    ids = ids[ids > 0]
    dense = np.zeros(instances.shape, dtype=np.int32)
    fg = instances > 0
    dense[fg] = np.searchsorted(ids, instances[fg]) + 1
    return dense, len(ids)


def instances_to_target(instances: Any, *, category: int = 1) -> dict[str, torch.Tensor]:
    """Boxes, labels and binary masks of every instance of an ``H x W`` instance map.

    Args:
        instances: ``H x W`` integer array or tensor, 0 = background, ids need not be contiguous.
        category: the class label of every instance (1 = the one foreground class).

    Returns:
        ``{"boxes": K x 4 float32, "labels": K int64, "masks": K x H x W uint8}``, instances in
        increasing order of their original ids; on the input's device for a tensor input.
    """
    device = instances.device if isinstance(instances, torch.Tensor) else torch.device("cpu")
    inst = instances.cpu().numpy() if isinstance(instances, torch.Tensor) else np.asarray(instances)
    if inst.ndim != 2:
        raise ValueError(f"instance map must be H x W, got shape {inst.shape}")
    dense, k = _dense(inst)
    slices = ndi.find_objects(dense, max_label=k)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float32)
    masks = dense[None] == np.arange(1, k + 1, dtype=np.int32)[:, None, None]
    return {
        "boxes": torch.from_numpy(boxes.reshape(k, 4)).to(device),
        "labels": torch.full((k,), category, dtype=torch.int64, device=device),
        "masks": torch.from_numpy(masks.astype(np.uint8)).to(device),
    }


def batch_to_targets(instances: torch.Tensor, *, category: int = 1) -> list[dict[str, torch.Tensor]]:
    """One target per image of an ``N x H x W`` batch of instance maps."""
    return [instances_to_target(inst, category=category) for inst in instances]
