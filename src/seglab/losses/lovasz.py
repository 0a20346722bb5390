"""Lovasz losses: tractable surrogates of the Jaccard index (Berman et al. 2018).

Berman, Rannen Triki & Blaschko 2018, "The Lovasz-Softmax loss: a tractable surrogate for the
optimization of the intersection-over-union measure in neural networks" (CVPR). The Jaccard loss
of a set of pixel errors is extended to real-valued errors by its Lovasz extension: sort the errors
in decreasing order and take their dot product with the increments of the Jaccard loss along that
order (Alg. 1 of the paper).

Every class (and image, with ``per_image``) is one row of a matrix that is sorted and reduced at
once: no Python loop over classes or images. Ignored pixels are sorted last with zero error and
zero foreground, which leaves the value of the valid pixels' extension unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seglab.losses._inputs import check_mode, flatten, scores_of


def lovasz_gradient(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss along each row of sorted foreground indicators (R x P)."""
    total = fg_sorted.sum(dim=1, keepdim=True)
    intersection = total - fg_sorted.cumsum(dim=1)
    union = total + (1 - fg_sorted).cumsum(dim=1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def lovasz_rows(errors: torch.Tensor, fg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Lovasz extension of the Jaccard loss of each row.

    Args:
        errors: R x P pixel errors (only positive parts count; hinge errors may be negative).
        fg: R x P foreground indicators (0 where ignored).
        valid: R x P, 1 for valid pixels, 0 for ignored ones.

    Returns:
        R values.
    """
    key = torch.where(valid > 0, errors.detach(), torch.full_like(errors, -torch.inf))
    order = key.argsort(dim=1, descending=True)
    errors_sorted = (F.relu(errors) * valid).gather(1, order)
    return (errors_sorted * lovasz_gradient(fg.gather(1, order))).sum(dim=1)


def _rows(x: torch.Tensor, per_image: bool) -> torch.Tensor:
    """N x C x P -> (N C) x P rows per image and class, or C x (N P) rows per class."""
    if per_image:
        return x.reshape(-1, x.shape[-1])
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _mean_where(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, values, torch.zeros_like(values)).sum() / keep.sum().clamp_min(1)


class LovaszLoss(nn.Module):
    """Lovasz-softmax (multiclass) or Lovasz hinge (binary, multilabel) loss.

    Multiclass: softmax probabilities, errors ``|1[y = c] - p_c|`` per class, averaged over the
    classes present in the valid target (the paper's default ``classes="present"``). With
    ``per_image`` the class average is taken per image, then over images that have a valid pixel.

    Binary: the Lovasz hinge on logits, errors ``1 - s * (2 y - 1)``. Multilabel: one hinge per
    channel, averaged over channels (smp instead pools all channels into one binary problem).

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        ignore_index: target value of pixels excluded from the loss.
        per_image: one loss per image, averaged, instead of one over the batch.
        from_logits: the input is logits; ``False`` means probabilities.
        eps: clamp used to turn probabilities into logits for the hinge.

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
        per_image: bool = False,
        from_logits: bool = True,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.ignore_index = ignore_index
        self.per_image = per_image
        self.from_logits, self.eps = from_logits, float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        flat = flatten(logits, target, self.mode, self.ignore_index)
        valid = flat.valid.expand_as(flat.logits)
        if self.mode == "multiclass":
            probs = flat.logits.softmax(dim=1) if self.from_logits else flat.logits
            errors = (flat.target - probs).abs()
        else:
            scores = scores_of(flat, self.mode, self.from_logits, self.eps)
            errors = 1 - scores * (2 * flat.target - 1)
        values = lovasz_rows(
            _rows(errors, self.per_image),
            _rows(flat.target, self.per_image),
            _rows(valid, self.per_image),
        )
        if self.mode != "multiclass":
            return _mean_where(values, _rows(valid, self.per_image).sum(1) > 0)
        present = _rows(flat.target, self.per_image).sum(1) > 0
        if not self.per_image:
            return _mean_where(values, present)
        n, c = flat.logits.shape[:2]
        per_image = (values * present).view(n, c).sum(1) / present.view(n, c).sum(1).clamp_min(1)
        return _mean_where(per_image, flat.valid.view(n, -1).sum(1) > 0)
