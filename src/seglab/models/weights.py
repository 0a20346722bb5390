"""Loading weights that must fit: a state dict loads whole or not at all, and what does not fit
is one line (counts, then the first keys of each kind) instead of PyTorch's many.

Used by the encoders (a pretrained weights file) and by :func:`seglab.spec.checkpoint.build_model`
(a checkpoint's weights); it imports nothing else of seglab.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def enum_names(enum: Any) -> list[str]:
    """The names a torchvision weights enum accepts (``"DEFAULT"`` first)."""
    return ["DEFAULT", *(w.name for w in enum)]


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _keys(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def describe_mismatch(
    missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[tuple[str, Sequence[int], Sequence[int]]]
) -> str | None:
    """One line saying which weights do not fit, or ``None`` when all do.

    ``shapes`` holds ``(key, loaded shape, model shape)``; e.g. ``"3 missing keys (a, b, c),
    2 unexpected (d, e), 1 with another shape (f: checkpoint [3, 16, 1, 1], model [3, 8, 1, 1])"``.
    """
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' if len(missing) != 1 else ''} ({_keys(list(missing))})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_keys(list(unexpected))})")
    if shapes:
        shown = "; ".join(f"{k}: checkpoint {_shape(a)}, model {_shape(b)}" for k, a, b in shapes[:2])
        more = f"; ... {len(shapes) - 2} more" if len(shapes) > 2 else ""
        parts.append(f"{len(shapes)} with another shape ({shown}{more})")
    return ", ".join(parts) or None


def load_fitting_weights(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Load ``state`` into ``module`` if every weight fits; else return what did not fit.

    Returns:
        ``None`` when ``state`` was loaded (same keys, same shapes: what ``strict=True`` checks),
        else :func:`describe_mismatch`'s line; ``module`` may then hold some of the weights.
    """
    own = module.state_dict()
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
              if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    wrong = {k for k, _, _ in shapes}
    fitting = {k: v for k, v in state.items() if k not in wrong}
    if hasattr(state, "_metadata"):  # module versions, for the modules' own key upgrades
        fitting = type(state)(fitting) if isinstance(state, dict) else fitting
        fitting._metadata = state._metadata  # type: ignore[attr-defined]
    result = module.load_state_dict(fitting, strict=False)
    missing = [k for k in result.missing_keys if k not in wrong]
    return describe_mismatch(missing, list(result.unexpected_keys), shapes)


def summarise_load_error(message: str) -> str:
    """PyTorch's multi-line ``load_state_dict`` error as :func:`describe_mismatch`'s one line."""

    def keys(title: str) -> list[str]:
        found = re.search(rf"{title} key\(s\) in state_dict: (.*)", message)
        return re.findall(r'"([^"]+)"', found.group(1)) if found else []

    shapes = [
        (k, [int(s) for s in a.split(",") if s.strip()], [int(s) for s in b.split(",") if s.strip()])
        for k, a, b in re.findall(
            r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
            r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)", message)
    ]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return describe_mismatch(keys("Missing"), keys("Unexpected"), shapes) or (lines[0] if lines else "does not load")
