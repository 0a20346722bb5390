"""``create_loss("ce+0.5*jaccard", mode=...)``: losses by name, combined with ``+``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
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
        **kwargs: loss options, in two forms that may be mixed:

            * ``option=value`` reaches every term that accepts it (``ignore_index=255`` reaches
              all, ``gamma`` only the focal loss, ``weight`` both terms of ``"ce+dice"``);
            * ``term={option: value, ...}`` reaches that term only, named as in the spec
              (``ce={"weight": [1, 5]}, dice={"smooth": 1}``; a repeated name is ``dice_2``).
              It wins over the same option given flat.

            An option no term accepts, or a term option its term does not accept, is an error.
            This is the config's ``loss_kwargs`` (see :func:`check_loss_kwargs`).

    Returns:
        The loss itself for a single unweighted name, else a :class:`CombinedLoss` whose
        components are named as in the spec.

    Raises:
        ConfigError: unknown name (valid ones listed), malformed spec, or unused option.
    """
    terms = parse_spec(spec)
    per_term = _split_options(spec, terms, kwargs, reserved=(), what="loss option(s)")
    modules = [cls(mode=mode, **options) for cls, options in per_term]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return modules[0]
    names = unique_names([name for _, name in terms])
    return CombinedLoss(dict(zip(names, modules, strict=True)), weights=[w for w, _ in terms])


# set by seglab's training itself: 255 = ignore in every target, and models return logits
RESERVED = ("ignore_index", "from_logits")


def check_loss_kwargs(spec: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``loss_kwargs`` for loss ``spec``, checked (forms: :func:`create_loss`).

    Raises:
        ConfigError: one line naming the bad keys and listing the valid ones for ``spec`` (its
            term names and the options of its terms, without ``ignore_index`` and
            ``from_logits``, which training sets).
    """
    _split_options(spec, parse_spec(spec), kwargs, reserved=RESERVED, what="loss_kwargs")
    return dict(kwargs)


def _split_options(
    spec: str, terms: list[tuple[float, str]], kwargs: Mapping[str, Any], *, reserved: tuple[str, ...], what: str
) -> list[tuple[type[nn.Module], dict[str, Any]]]:
    """Each term's class and its options from flat and per-term ``kwargs`` (see :func:`create_loss`)."""
    names = unique_names([name for _, name in terms])
    classes = [LOSSES[name] for _, name in terms]
    options = [_options(cls) - set(reserved) for cls in classes]
    accepted = set().union(*options)
    valid = f"valid: term names {', '.join(names)}; options {', '.join(sorted(accepted))}"
    bad = sorted(k for k in kwargs if k not in names and k not in accepted)
    for name, opts in zip(names, options, strict=True):
        nested = kwargs.get(name, {})
        if not isinstance(nested, Mapping):
            raise ConfigError(f"{what}: {name} must map {name}'s options to values, got {nested!r}; {valid}")
        bad += [f"{name}.{k}" for k in sorted(set(nested) - opts)]
    if bad:
        raise ConfigError(f"{what} {', '.join(bad)} not accepted by {spec!r}; {valid}")
    flat = {k: v for k, v in kwargs.items() if k not in names}
    return [
        (cls, {**{k: v for k, v in flat.items() if k in opts}, **kwargs.get(name, {})})
        for cls, name, opts in zip(classes, names, options, strict=True)
    ]
