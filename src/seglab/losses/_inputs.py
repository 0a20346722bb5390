"""Mode checking and input layout shared by every segmentation loss.

A loss is told its ``mode`` and refuses tensors that do not fit it, with a message naming the
expected shapes, so that mixing up binary, multiclass and multilabel targets (the most frequent
complaint about segmentation losses) cannot pass silently:

===========  ==============================  ============================================
mode         logits                          target
===========  ==============================  ============================================
binary       N x 1 x H x W  or  N x H x W    N x H x W or N x 1 x H x W, values in {0, 1}
multiclass   N x C x H x W, C >= 2           N x H x W integer class indices in [0, C)
multilabel   N x C x H x W                   N x C x H x W, values in {0, 1}
===========  ==============================  ============================================

In every mode a target value equal to ``ignore_index`` marks an ignored pixel (in multilabel mode,
an ignored pixel of one label only). Everything downstream works on the flat layout of
:class:`Flat`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seglab.errors import ConfigError, unknown_choice

MODES = ("binary", "multiclass", "multilabel")

EXPECTED = {
    "binary": "logits N x 1 x H x W or N x H x W and a target N x H x W or N x 1 x H x W "
    "with values in {0, 1}",
    "multiclass": "logits N x C x H x W (C >= 2) and an integer target N x H x W of class "
    "indices; for one output channel use mode='binary'",
    "multilabel": "logits N x C x H x W and a target N x C x H x W with values in {0, 1}",
}


class LossInputError(ConfigError, ValueError):
    """Tensors that do not fit the loss's mode (a ``ConfigError`` and a ``ValueError``)."""


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise a ``ConfigError`` listing them."""
    if mode not in MODES:
        raise unknown_choice("loss mode", mode, MODES)
    return mode


def as_weight(weight: object, mode: str, what: str = "weight") -> torch.Tensor | None:
    """Turn a per-class weight sequence into a float tensor; refuse it where it does not apply."""
    if weight is None:
        return None
    if mode == "binary":
        raise ConfigError(f"{what} is per class and does not apply to mode='binary'")
    tensor = torch.as_tensor(weight, dtype=torch.float32).flatten()
    if (tensor < 0).any():
        raise ConfigError(f"{what} must be non-negative, got {tensor.tolist()}")
    return tensor


def class_vector(weight: torch.Tensor, num_classes: int, what: str = "weight") -> torch.Tensor:
    """Check that a per-class vector has one entry per class."""
    if weight.numel() != num_classes:
        raise LossInputError(
            f"{what} has {weight.numel()} entries but the logits have {num_classes} classes"
        )
    return weight


@dataclass
class Flat:
    """Inputs of any mode in one layout (P = H * W pixels).

    Attributes:
        logits: N x C x P scores as given (C = 1 in binary mode).
        target: N x C x P float in {0, 1} (one-hot in multiclass mode), 0 where ignored.
        valid: N x 1 x P (binary, multiclass) or N x C x P (multilabel) float, 0 where ignored.
        labels: N x P class indices with ignored pixels set to 0 (multiclass only, else None).
    """

    logits: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    labels: torch.Tensor | None


def _fail(mode: str, logits: torch.Tensor, target: torch.Tensor, why: str = "") -> LossInputError:
    got = f"got logits {tuple(logits.shape)} and target {tuple(target.shape)} ({target.dtype})"
    return LossInputError(f"{mode} mode expects {EXPECTED[mode]}; {got}{why}")


def _check_layout(logits: torch.Tensor, target: torch.Tensor, mode: str) -> None:
    if not logits.is_floating_point():
        raise _fail(mode, logits, target, ": logits must be floating point")
    n = logits.shape[0] if logits.ndim else -1
    if mode == "binary":
        ok = logits.ndim == 3 or (logits.ndim == 4 and logits.shape[1] == 1)
        spatial = logits.shape[-2:]
        ok = ok and target.ndim in (3, 4) and (target.ndim == 3 or target.shape[1] == 1)
        ok = ok and target.shape[0] == n and target.shape[-2:] == spatial
    elif mode == "multiclass":
        ok = logits.ndim == 4 and logits.shape[1] >= 2 and target.ndim == 3
        ok = ok and target.shape == (n, *logits.shape[2:])
        if ok and (target.is_floating_point() or target.dtype == torch.bool):
            raise _fail(mode, logits, target, ": the target must be an integer tensor")
    else:
        ok = logits.ndim == 4 and target.shape == logits.shape
    if not ok:
        raise _fail(mode, logits, target)


def _check_values(target: torch.Tensor, valid: torch.Tensor, mode: str, classes: int) -> None:
    if mode == "multiclass":
        bad = ((target < 0) | (target >= classes)) & valid
        if bad.any():
            value = target[bad][0].item()
            raise LossInputError(
                f"multiclass mode expects target values in [0, {classes}) or ignore_index; "
                f"found {value}"
            )
    else:
        bad = (target != 0) & (target != 1) & valid
        if bad.any():
            value = target[bad][0].item()
            hint = " (class indices need mode='multiclass')" if mode == "binary" else ""
            raise LossInputError(
                f"{mode} mode expects target values in {{0, 1}} or ignore_index; found {value}{hint}"
            )


def flatten(
    logits: torch.Tensor, target: torch.Tensor, mode: str, ignore_index: int | None
) -> Flat:
    """Validate ``(logits, target)`` for ``mode`` and bring them to the :class:`Flat` layout.

    Raises:
        LossInputError: shapes, dtypes or target values that do not fit the mode.
    """
    _check_layout(logits, target, mode)
    n = logits.shape[0]
    if mode == "binary":
        logits = logits.reshape(n, 1, -1)
        target = target.reshape(n, 1, -1)
    else:
        logits = logits.reshape(n, logits.shape[1], -1)
        target = (
            target.reshape(n, -1)
            if mode == "multiclass"
            else target.reshape(n, target.shape[1], -1)
        )
    if ignore_index is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        valid = target != ignore_index
    classes = logits.shape[1]
    _check_values(target, valid, mode, classes)
    dtype = logits.dtype
    if mode == "multiclass":
        labels = target.long().masked_fill(~valid, 0)
        valid_f = valid.unsqueeze(1).to(dtype)
        onehot = logits.new_zeros(logits.shape).scatter_(1, labels.unsqueeze(1), valid_f)
        return Flat(logits, onehot, valid_f, labels)
    valid_f = valid.to(dtype)
    return Flat(logits, target.to(dtype) * valid_f, valid_f, None)


def probabilities(logits: torch.Tensor, mode: str, from_logits: bool) -> torch.Tensor:
    """Softmax over classes (multiclass) or sigmoid (binary, multilabel) unless already probabilities."""
    if not from_logits:
        return logits
    if mode == "multiclass":
        return logits.log_softmax(dim=1).exp()
    return F.logsigmoid(logits).exp()


def scores_of(flat: Flat, mode: str, from_logits: bool, eps: float) -> torch.Tensor:
    """Logits for the cross-entropy family; probabilities are mapped back to log space."""
    if from_logits:
        return flat.logits
    probs = flat.logits
    if mode == "multiclass":
        return torch.log(probs.clamp_min(eps))
    return torch.logit(probs.clamp(eps, 1 - eps))
