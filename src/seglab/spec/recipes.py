"""Recipes: what a task and instance method mean for targets, heads, losses and decoding.

The instance task follows the lecture's semantic-to-instance route: a network predicts per-pixel
classes that make touching nuclei separable, and a decoder turns them into an instance map.

``three_class``  background / interior / boundary, CE + Dice, marker-controlled watershed.
``distance``     background / foreground plus a per-instance normalised distance map (extra
                 head, regressed with MSE on the sigmoid), distance-map watershed.
``embedding``    foreground + pixel embeddings trained with the discriminative loss
                 (De Brabandere et al. 2017), decoded by mean-shift on foreground embeddings.
``seeds``        foreground + embeddings + seediness (Fathi et al. 2017): seeds by seediness,
                 pixels assigned by embedding similarity.
``recurrent``    foreground + embeddings grouped by an unrolled recurrent mean-shift during
                 training (Kong and Fowlkes 2018), decoded by mean-shift.
``maskrcnn``     direct instance segmentation (``--model maskrcnn``): boxes + masks from the
                 instance maps, masks pasted by score.
``semantic``     one class per label value, CE + Dice, arg-max.
``panoptic``     the ``three_class`` instance head plus a class head over all classes (stuff and
                 thing types; aux head ``classes``), trained jointly; instances decoded by the
                 watershed, then fused with the class probabilities (:mod:`seglab.instances.panoptic`).

The decoder input is a ``C' x H x W`` stack (see :mod:`seglab.instances`): the full softmax for
``three_class`` and ``semantic``; for ``panoptic`` that soft-max followed by the soft-max of the
class head; otherwise the foreground probability followed by every extra
head in ``aux_heads`` order, each through its activation in ``aux_activations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from seglab.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """How one task/method is trained and decoded."""

    task: str
    method: str | None
    num_classes: int
    targets: tuple[str, ...]  # dataset target names (seglab.data.SegmentationDataset)
    class_target: str  # the target the classification loss sees
    class_names: tuple[str, ...]
    aux_heads: dict[str, int] = field(default_factory=dict)  # extra model heads: name -> channels
    aux_activations: dict[str, str] = field(default_factory=dict)  # "sigmoid" | "identity"
    decoder: str | None = None


def make_recipe(task: str, method: str, num_classes: int | None = None, *, embedding_dim: int | None = None) -> Recipe:
    """The recipe for a task (``instance`` | ``semantic``) and instance method.

    ``embedding_dim`` None takes :data:`EMBEDDING_DIMS`: unit-sphere embeddings (``recurrent``)
    need more dimensions than Euclidean ones to hold many mutually dissimilar directions (Kong &
    Fowlkes relate the dimension to the margin; they used 64).
    """
    if task == "panoptic":
        if method != "three_class":
            raise ConfigError(f"the panoptic task trains the three_class instance head, not {method!r}")
        if num_classes is None or num_classes < 2:
            raise ConfigError(f"the panoptic task needs at least 2 classes (classes.yaml), got {num_classes}")
        return Recipe(
            "panoptic", "three_class", 3, ("three_class", "classes"), "three_class",
            ("background", "interior", "boundary"), aux_heads={"classes": num_classes},
            aux_activations={"classes": "softmax"}, decoder="three_class_watershed",
        )
    if task == "semantic":
        if num_classes is None or num_classes < 2:
            raise ConfigError(f"the semantic task needs num_classes >= 2, got {num_classes}")
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
            ("background", "foreground"), aux_heads={"distance": 1}, aux_activations={"distance": "sigmoid"},
            decoder="distance_watershed",
        )
    if method == "maskrcnn":  # direct instance segmentation: the dataset's instance maps suffice
        return Recipe("instance", "maskrcnn", 2, (), "", ("background", "nucleus"), decoder="maskrcnn")
    if method in EMBEDDING_METHODS:
        dim = EMBEDDING_DIMS[method] if embedding_dim is None else embedding_dim
        heads = {"embedding": dim} if method != "seeds" else {"seediness": 1, "embedding": dim}
        acts = {"embedding": "identity", "seediness": "sigmoid"}
        return Recipe(
            "instance", method, 2, ("foreground",), "foreground",
            ("background", "foreground"), aux_heads=heads,
            aux_activations={k: acts[k] for k in heads}, decoder=EMBEDDING_METHODS[method],
        )
    raise ConfigError(f"unknown instance method {method!r}")


# instance method -> decoder of the embedding routes (seglab.instances)
EMBEDDING_METHODS = {"embedding": "embedding_meanshift", "seeds": "embedding_seeds", "recurrent": "embedding_meanshift"}
EMBEDDING_DIMS = {"embedding": 8, "seeds": 8, "recurrent": 32}  # default embedding channels per method


def decoder_input(out: torch.Tensor | dict[str, torch.Tensor], recipe: Recipe) -> torch.Tensor:
    """Model outputs -> the decoder's input stack, ``N x C' x H x W`` (module docstring).

    Used by validation (:class:`seglab.engine.module.SegmentationModule`) and prediction
    (:class:`seglab.inference.Predictor`) alike, so both decode the same thing.
    """
    out = out if isinstance(out, dict) else {"logits": out}
    logits = out["logits"].float()
    if logits.shape[1] > 1:
        probs = logits.softmax(1)
    else:  # a single binary channel: [background, foreground]
        probs = torch.cat([1 - logits.sigmoid(), logits.sigmoid()], 1)
    if recipe.task == "panoptic":  # 3-class soft-max, then the class head's soft-max
        return torch.cat([probs, out["classes"].float().softmax(1)], 1)
    if not recipe.aux_heads:
        return probs
    stack = [probs[:, 1:2]]
    for name in recipe.aux_heads:
        head = out[name].float()
        stack.append(head.sigmoid() if recipe.aux_activations.get(name) == "sigmoid" else head)
    return torch.cat(stack, 1)
