"""``create_loss("ce+0.5*jaccard", mode=...)``: losses by name, combined with ``+``."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from seglab.errors import ConfigError, unknown_choice
from seglab.losses.combined import CombinedLoss, unique_names
from seglab.losses.cross_entropy import CrossEntropyLoss, FocalLoss
from seglab.losses.generalized_dice import GeneralizedDiceLoss
from seglab.losses.lovasz import LovaszLoss
from seglab.losses.region import DiceLoss, JaccardLoss, TverskyLoss

LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "generalized_dice": GeneralizedDiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszLoss,
}


def parse_spec(spec: str) -> list[tuple[float, str]]:
    """``"ce + 0.5*jaccard"`` -> ``[(1.0, "ce"), (0.5, "jaccard")]``; names are checked."""
    terms = []
    for raw in spec.split("+"):
        term = raw.strip()
        if not term:
            raise ConfigError(f"empty term in loss spec {spec!r}; write e.g. 'ce+0.5*dice'")
        weight_text, _, name = term.rpartition("*")
        name = name.strip()
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ConfigError(f"bad weight {weight_text.strip()!r} in loss spec {spec!r}") from None
        if name not in LOSSES:
            raise unknown_choice("loss", name, LOSSES)
        terms.append((weight, name))
    return terms


def _options(cls: type[nn.Module]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "mode"}


def create_loss(spec: str, *, mode: str, **kwargs: Any) -> nn.Module:
    """Build a loss from a spec such as ``"ce"``, ``"ce+dice"`` or ``"ce+0.5*jaccard"``.

    Args:
        spec: loss names from :data:`LOSSES` joined by ``+``, each optionally ``weight*name``.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``, given to every loss.
        **kwargs: options given to every loss that accepts them (``ignore_index=255`` reaches all;
            ``gamma`` only the focal loss). An option no loss of the spec accepts is an error.

    Returns:
        The loss itself for a single unweighted name, else a :class:`CombinedLoss` whose
        components are named as in the spec.

    Raises:
        ConfigError: unknown name (valid ones listed), malformed spec, or unused option.
    """
    terms = parse_spec(spec)
    classes = [LOSSES[name] for _, name in terms]
    accepted = set().union(*(_options(cls) for cls in classes))
    unused = sorted(set(kwargs) - accepted)
    if unused:
        raise ConfigError(
            f"loss option(s) {', '.join(unused)} not accepted by {spec!r}; "
            f"valid options: {', '.join(sorted(accepted))}"
        )
    modules = [
        cls(mode=mode, **{k: v for k, v in kwargs.items() if k in _options(cls)}) for cls in classes
    ]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return modules[0]
    names = unique_names([name for _, name in terms])
    return CombinedLoss(dict(zip(names, modules, strict=True)), weights=[w for w, _ in terms])
