"""Recipes: what a task and instance method mean for targets, heads, losses and decoding.

The instance task follows the lecture's semantic-to-instance route: a network predicts per-pixel
classes that make touching nuclei separable, and a decoder turns them into an instance map.

``three_class``  background / interior / boundary, CE + Dice, marker-controlled watershed.
``distance``     background / foreground plus a per-instance normalised distance map (extra
                 head, regressed with MSE on the sigmoid), distance-map watershed.
``semantic``     one class per label value, CE + Dice, arg-max.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """How one task/method is trained and decoded."""

    task: str
    method: str | None
    num_classes: int
    targets: tuple[str, ...]  # dataset target names (seglab.data.SegmentationDataset)
    class_target: str  # the target the classification loss sees
    class_names: tuple[str, ...]
    aux_heads: dict[str, int] = field(default_factory=dict)
    decoder: str | None = None
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)


def make_recipe(task: str, method: str, num_classes: int | None = None) -> Recipe:
    """The recipe for a task (``instance`` | ``semantic``) and instance method."""
    if task == "semantic":
        if num_classes is None or num_classes < 2:
            raise ValueError("semantic task needs num_classes >= 2")
        names = tuple(f"class_{i}" for i in range(num_classes))
        return Recipe("semantic", None, num_classes, ("semantic",), "semantic", names)
    if method == "three_class":
        return Recipe(
            "instance", "three_class", 3, ("three_class",), "three_class",
            ("background", "interior", "boundary"), decoder="three_class_watershed",
        )
    if method == "distance":
        return Recipe(
            "instance", "distance", 2, ("foreground", "distance"), "foreground",
            ("background", "foreground"), aux_heads={"distance": 1}, decoder="distance_watershed",
        )
    raise ValueError(f"unknown instance method {method!r}")
