"""Weighted sums of losses, e.g. cross-entropy + Jaccard as on the lecture's slide."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from seglab.errors import ConfigError


def default_name(loss: nn.Module) -> str:
    """``DiceLoss`` -> ``dice``, ``GeneralizedDiceLoss`` -> ``generalized_dice``."""
    stem = type(loss).__name__.removesuffix("Loss") or type(loss).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def unique_names(names: Sequence[str]) -> list[str]:
    """Suffix repeated names: ``dice, dice`` -> ``dice, dice_2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


class CombinedLoss(nn.Module):
    """``sum_k weights[k] * losses[k](logits, target)``.

    Args:
        losses: the component losses, as a list (named after their class: ``dice``,
            ``cross_entropy``, repeated names get ``_2``, ``_3``) or a dict name -> loss.
            Components that declare a ``mode`` must all declare the same one.
        weights: one factor per component (default all 1).

    Attributes:
        last_components: after each call, name -> unweighted value of each component (floats,
            for logging).

    Shape:
        As the components: ``(logits, target)`` in, scalar out.
    """

    def __init__(
        self,
        losses: Sequence[nn.Module] | Mapping[str, nn.Module],
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(losses, Mapping):
            names, modules = list(losses), list(losses.values())
        else:
            modules = list(losses)
            names = unique_names([default_name(m) for m in modules])
        if not modules:
            raise ConfigError("CombinedLoss needs at least one loss")
        weights = [1.0] * len(modules) if weights is None else [float(w) for w in weights]
        if len(weights) != len(modules):
            raise ConfigError(f"CombinedLoss got {len(modules)} losses but {len(weights)} weights")
        modes = {getattr(m, "mode", None) for m in modules} - {None}
        if len(modes) > 1:
            raise ConfigError(f"CombinedLoss components disagree on mode: {sorted(modes)}")
        self.mode = modes.pop() if modes else None
        self.names, self.weights = names, weights
        self.losses = nn.ModuleList(modules)
        self.last_components: dict[str, float] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the weighted sum; record the unweighted components in ``last_components``."""
        values = [loss(logits, target) for loss in self.losses]
        self.last_components = {
            n: float(v.detach()) for n, v in zip(self.names, values, strict=True)
        }
        return sum((w * v for w, v in zip(self.weights, values, strict=True)), logits.new_zeros(()))

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for w, n in zip(self.weights, self.names, strict=True))
