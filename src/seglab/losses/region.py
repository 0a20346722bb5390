"""Soft region losses: Dice, Jaccard (soft IoU) and Tversky, one formula with three settings.

For each class c, with soft predictions p (softmax or sigmoid) and the one-hot reference t,
summed over the valid pixels of the whole batch (or of each image with ``per_image=True``):

    I = sum p t,   FP = sum p (1 - t),   FN = sum (1 - p) t
    score_c = (I + smooth) / (I + a FP + b FN + smooth)

Dice is (a, b) = (1/2, 1/2) (Milletari et al. 2016, "V-Net"), Jaccard (1, 1) (Rahman & Wang
2016, "Optimizing intersection-over-union in deep neural networks"), Tversky (alpha, beta) (Salehi
et al. 2017, "Tversky loss function for image segmentation using 3D fully convolutional deep
networks"). This is the formula of segmentation_models_pytorch; MONAI's Dice writes
``(2 I + s) / (P + T + s)``, i.e. its smoothing is twice ours.

The loss of a class is ``1 - score`` (or ``-log(score)`` with ``log_loss=True``). Classes are then
averaged:

* ``average="present"`` (default): over the classes whose reference has at least one valid pixel
  (in the batch, or in the image with ``per_image``). A class absent from the reference has no
  defined overlap and is left out; if no class is present the loss is 0 (gradient kept).
* ``average="all"``: over every class. An absent class then scores ``smooth / (a FP + smooth)``,
  which rewards predicting nothing only if ``smooth > 0``, so this setting requires it.

``weight`` multiplies each class's term before averaging (the mean still divides by the number of
averaged classes, so ``weight = ones`` is the plain mean; as in MONAI). In binary mode there is a
single (foreground) class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.errors import ConfigError, unknown_choice
from seglab.losses._inputs import as_weight, check_mode, class_vector, flatten, probabilities

AVERAGES = ("present", "all")


def overlap_sums(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    ignore_index: int | None,
    from_logits: bool,
    per_image: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft intersection I, prediction mass P and reference mass T per class.

    Returns:
        Three tensors of shape C (batch sums) or N x C (``per_image``).
    """
    flat = flatten(logits, target, mode, ignore_index)
    probs = probabilities(flat.logits, mode, from_logits) * flat.valid
    dims = (2,) if per_image else (0, 2)
    intersection = (probs * flat.target).sum(dims)
    return intersection, probs.sum(dims), flat.target.sum(dims)


class TverskyLoss(nn.Module):
    """Tversky loss ``1 - (I + s) / (I + alpha FP + beta FN + s)`` per class, averaged.

    Salehi et al. 2017, "Tversky loss function for image segmentation using 3D fully convolutional
    deep networks". ``alpha`` weighs false positives and ``beta`` false negatives; the defaults
    (0.3, 0.7) favour recall of small structures as in the paper; (0.5, 0.5) is Dice.

    Args:
        mode: ``"binary"``, ``"multiclass"`` (softmax) or ``"multilabel"`` (sigmoid per channel).
        alpha: weight of false positives.
        beta: weight of false negatives.
        ignore_index: target value of pixels excluded from every sum.
        weight: per-class factors (C,) on each class's term; not in binary mode.
        smooth: added to numerator and denominator (smp's convention).
        eps: lower bound of the denominator and of the score under ``log``.
        log_loss: use ``-log(score)`` instead of ``1 - score``.
        per_image: score each image separately, then average, instead of summing over the batch.
        average: ``"present"`` or ``"all"`` classes (see the module docstring).
        from_logits: the input is logits; ``False`` means probabilities.

    Shape:
        - logits: N x C x H x W (binary: N x 1 x H x W or N x H x W).
        - target: multiclass N x H x W int; binary N x H x W or N x 1 x H x W; multilabel N x C x H x W.
        - output: scalar.
    """

    def __init__(
        self,
        *,
        mode: str,
        alpha: float = 0.3,
        beta: float = 0.7,
        ignore_index: int | None = None,
        weight: Sequence[float] | torch.Tensor | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        log_loss: bool = False,
        per_image: bool = False,
        average: str = "present",
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        if average not in AVERAGES:
            raise unknown_choice("class average", average, AVERAGES)
        if average == "all" and smooth <= 0:
            raise ConfigError(
                "average='all' needs smooth > 0 so that a class absent from both "
                "reference and prediction scores 1 (e.g. smooth=1e-5)"
            )
        self.alpha, self.beta = float(alpha), float(beta)
        self.ignore_index = ignore_index
        self.register_buffer("weight", as_weight(weight, mode))
        self.smooth, self.eps = float(smooth), float(eps)
        self.log_loss, self.per_image, self.average = log_loss, per_image, average
        self.from_logits = from_logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        inter, pred, ref = overlap_sums(
            logits, target, self.mode, self.ignore_index, self.from_logits, self.per_image
        )
        fp, fn = pred - inter, ref - inter
        denominator = inter + self.alpha * fp + self.beta * fn + self.smooth
        score = (inter + self.smooth) / denominator.clamp_min(self.eps)
        loss = -torch.log(score.clamp_min(self.eps)) if self.log_loss else 1.0 - score
        return average_classes(loss, ref > 0, self.weight, self.average)


def average_classes(
    loss: torch.Tensor, present: torch.Tensor, weight: torch.Tensor | None, average: str
) -> torch.Tensor:
    """Mean of per-class losses (C or N x C) over present or all entries, each times its weight."""
    if weight is not None:
        loss = loss * class_vector(weight, loss.shape[-1]).to(loss)
    if average == "all":
        return loss.mean()
    count = present.sum().clamp_min(1)
    return torch.where(present, loss, torch.zeros_like(loss)).sum() / count


class DiceLoss(TverskyLoss):
    """Soft Dice loss ``1 - (I + s) / (I + FP/2 + FN/2 + s)`` per class, averaged.

    Milletari et al. 2016, "V-Net: fully convolutional neural networks for volumetric medical
    image segmentation". Equal to ``1 - (2I + 2s) / (P + T + 2s)``. Arguments and averaging
    as in :class:`TverskyLoss`, with alpha = beta = 1/2 fixed.

    Shape:
        - logits: N x C x H x W (binary: N x 1 x H x W or N x H x W).
        - target: multiclass N x H x W int; binary N x H x W or N x 1 x H x W; multilabel N x C x H x W.
        - output: scalar.
    """

    _fixed = (0.5, 0.5)

    def __init__(
        self,
        *,
        mode: str,
        ignore_index: int | None = None,
        weight: Sequence[float] | torch.Tensor | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        log_loss: bool = False,
        per_image: bool = False,
        average: str = "present",
        from_logits: bool = True,
    ) -> None:
        alpha, beta = self._fixed
        super().__init__(
            mode=mode,
            alpha=alpha,
            beta=beta,
            ignore_index=ignore_index,
            weight=weight,
            smooth=smooth,
            eps=eps,
            log_loss=log_loss,
            per_image=per_image,
            average=average,
            from_logits=from_logits,
        )


class JaccardLoss(DiceLoss):
    """Soft Jaccard (IoU) loss ``1 - (I + s) / (P + T - I + s)`` per class, averaged.

    Rahman & Wang 2016, "Optimizing intersection-over-union in deep neural networks for image
    segmentation". Arguments and averaging as in :class:`TverskyLoss`, with
    alpha = beta = 1 fixed.

    Shape:
        - logits: N x C x H x W (binary: N x 1 x H x W or N x H x W).
        - target: multiclass N x H x W int; binary N x H x W or N x 1 x H x W; multilabel N x C x H x W.
        - output: scalar.
    """

    _fixed = (1.0, 1.0)
