"""Pixel-wise cross-entropy and focal loss with an explicit mode.

Both average a per-pixel term over the valid (not ignored) pixels:

* multiclass: softmax cross-entropy; with a class ``weight`` the sum is divided by the summed
  weights of the valid pixels' classes (exactly ``torch.nn.functional.cross_entropy``);
* binary / multilabel: binary cross-entropy on each logit (sigmoid), averaged over the valid
  elements; a class ``weight`` multiplies each channel's term (exactly
  ``binary_cross_entropy_with_logits`` with a broadcast ``weight``).

:class:`FocalLoss` with ``gamma=0`` and no ``alpha`` equals :class:`CrossEntropyLoss` in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError
from seglab.losses._inputs import Flat, as_weight, check_mode, class_vector, flatten, scores_of

Weight = Sequence[float] | torch.Tensor | None


def per_class(
    weight: torch.Tensor | None, num_classes: int, like: torch.Tensor
) -> torch.Tensor | None:
    """Weight as a 1 x C x 1 tensor broadcasting over N x C x P (one value broadcasts to all)."""
    if weight is None:
        return None
    if weight.numel() == 1:
        return weight.to(like).view(1, 1, 1)
    return class_vector(weight, num_classes).to(like).view(1, -1, 1)


def weighted_mean(
    terms: torch.Tensor, flat: Flat, weight: torch.Tensor | None, normalise_by_weight: bool
) -> torch.Tensor:
    """Sum of ``terms * weight`` over valid pixels divided by their count (or summed weights)."""
    if flat.labels is not None:  # multiclass: terms and weights are per pixel (N x P)
        valid = flat.valid[:, 0]
        if weight is None:
            w = torch.ones_like(terms)
        else:
            w = class_vector(weight, flat.logits.shape[1]).to(terms)[flat.labels]
        norm = (w * valid).sum() if normalise_by_weight else valid.sum()
        return (terms * w * valid).sum() / norm.clamp_min(torch.finfo(terms.dtype).tiny)
    w = per_class(weight, terms.shape[1], terms)
    weighted = terms if w is None else terms * w
    return (weighted * flat.valid).sum() / flat.valid.sum().clamp_min(1)


def modulate(one_minus_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal factor ``(1 - p_t)^gamma``; exactly 1 for gamma = 0 (no 0^0 gradient trouble)."""
    if gamma == 0:
        return torch.ones_like(one_minus_pt)
    return one_minus_pt.clamp_min(0).pow(gamma)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy: softmax CE in multiclass mode, BCE-with-logits in binary/multilabel mode.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        ignore_index: target value of pixels excluded from the loss (all ignored -> 0).
        weight: per-class weights (C,), multiclass or multilabel (see the module docstring).
        pos_weight: binary/multilabel only: factor on positive pixels, scalar or (C,)
            (``BCEWithLogitsLoss``'s ``pos_weight``).
        from_logits: the input is logits; ``False`` means probabilities.
        eps: clamp used when converting probabilities back to log space.

    Shape:
        - logits: N x C x H x W (binary: N x 1 x H x W or N x H x W).
        - target: multiclass N x H x W int; binary N x H x W or N x 1 x H x W; multilabel N x C x H x W.
        - output: scalar.
    """

    def __init__(
        self,
        *,
        mode: str,
        ignore_index: int | None = None,
        weight: Weight = None,
        pos_weight: float | Weight = None,
        from_logits: bool = True,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.ignore_index = ignore_index
        self.register_buffer("weight", as_weight(weight, mode))
        if pos_weight is not None and mode == "multiclass":
            raise ConfigError("pos_weight applies to binary and multilabel modes; use weight")
        pos = (
            None
            if pos_weight is None
            else torch.as_tensor(pos_weight, dtype=torch.float32).flatten()
        )
        self.register_buffer("pos_weight", pos)
        self.from_logits, self.eps = from_logits, float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        flat = flatten(logits, target, self.mode, self.ignore_index)
        scores = scores_of(flat, self.mode, self.from_logits, self.eps)
        if self.mode == "multiclass":
            nll = F.cross_entropy(scores, flat.labels, reduction="none")
            return weighted_mean(nll, flat, self.weight, normalise_by_weight=True)
        pos = per_class(self.pos_weight, scores.shape[1], scores)
        bce = F.binary_cross_entropy_with_logits(
            scores, flat.target, pos_weight=pos, reduction="none"
        )
        return weighted_mean(bce, flat, self.weight, normalise_by_weight=False)


class FocalLoss(nn.Module):
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` averaged over valid pixels.

    Lin et al. 2017, "Focal loss for dense object detection". Binary/multilabel: sigmoid per
    logit, ``alpha`` weighs positives and ``1 - alpha`` negatives (None: no balancing).
    Multiclass: softmax, p_t the probability of the true class; class balancing there is the
    per-class ``weight`` (normalised by the summed weights, like cross-entropy), so ``alpha`` is
    refused to keep one meaning per argument.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        alpha: positive-class balance in [0, 1] (binary/multilabel only).
        gamma: focusing exponent (0 gives cross-entropy).
        ignore_index: target value of pixels excluded from the loss.
        weight: per-class weights (C,), multiclass or multilabel.
        from_logits: the input is logits; ``False`` means probabilities.
        eps: clamp used when converting probabilities back to log space.

    Shape:
        - logits: N x C x H x W (binary: N x 1 x H x W or N x H x W).
        - target: multiclass N x H x W int; binary N x H x W or N x 1 x H x W; multilabel N x C x H x W.
        - output: scalar.
    """

    def __init__(
        self,
        *,
        mode: str,
        alpha: float | None = None,
        gamma: float = 2.0,
        ignore_index: int | None = None,
        weight: Weight = None,
        from_logits: bool = True,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        if alpha is not None and mode == "multiclass":
            raise ConfigError(
                "alpha applies to binary and multilabel modes; in multiclass mode "
                "balance classes with weight=[w_0, ..., w_C-1]"
            )
        if alpha is not None and not 0 <= alpha <= 1:
            raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha, self.gamma = alpha, float(gamma)
        self.ignore_index = ignore_index
        self.register_buffer("weight", as_weight(weight, mode))
        self.from_logits, self.eps = from_logits, float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        flat = flatten(logits, target, self.mode, self.ignore_index)
        scores = scores_of(flat, self.mode, self.from_logits, self.eps)
        if self.mode == "multiclass":
            log_pt = scores.log_softmax(dim=1).gather(1, flat.labels.unsqueeze(1)).squeeze(1)
            focal = -modulate(1 - log_pt.exp(), self.gamma) * log_pt
            return weighted_mean(focal, flat, self.weight, normalise_by_weight=True)
        bce = F.binary_cross_entropy_with_logits(scores, flat.target, reduction="none")
        focal = modulate(1 - torch.exp(-bce), self.gamma) * bce
        if self.alpha is not None:
            focal = focal * (self.alpha * flat.target + (1 - self.alpha) * (1 - flat.target))
        return weighted_mean(focal, flat, self.weight, normalise_by_weight=False)
