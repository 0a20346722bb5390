"""Data: readers (folder, MoNuSeg XML, COCO), synthetic nuclei, label targets, joint transforms,
the patch data set, and the data-set checker.

Public names are importable from ``seglab.data`` and load their module on first use (PEP 562),
so ``import seglab.data.io`` stays light (no torch). The table below is the whole public API.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (explicit, so grep finds where each name lives)
_EXPORTS = {
    "read_image": "seglab.data.io",
    "read_label": "seglab.data.io",
    "write_image": "seglab.data.io",
    "write_label": "seglab.data.io",
    "image_to_tensor": "seglab.data.io",
    "rle_encode": "seglab.data.rle",
    "rle_decode": "seglab.data.rle",
    "read_monuseg_xml": "seglab.data.monuseg",
    "read_monuseg_regions": "seglab.data.monuseg",
    "find_monuseg_samples": "seglab.data.monuseg",
    "read_coco_instances": "seglab.data.coco",
    "instances_to_coco_annotations": "seglab.data.coco",
    "instances_to_coco": "seglab.data.coco",
    "synth_tile": "seglab.data.synthetic",
    "write_synthetic_dataset": "seglab.data.synthetic",
    "foreground": "seglab.data.targets",
    "three_class_targets": "seglab.data.targets",
    "distance_targets": "seglab.data.targets",
    "relabel_sequential": "seglab.data.targets",
    "IGNORE_INDEX": "seglab.data.targets",
    "build_transforms": "seglab.data.transforms",
    "Sample": "seglab.data.io",
    "find_samples": "seglab.data.dataset",
    "SegmentationDataset": "seglab.data.dataset",
    "make_loader": "seglab.data.dataset",
    "check_dataset": "seglab.data.check",
    "format_report": "seglab.data.check",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seglab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
