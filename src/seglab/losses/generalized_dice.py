"""Generalised Dice loss (Sudre et al. 2017) for highly unbalanced segmentations."""

from __future__ import annotations

import torch
from torch import nn

from seglab.losses._inputs import check_mode, flatten, probabilities


class GeneralizedDiceLoss(nn.Module):
    """Generalised Dice loss with class weights ``w_c = 1 / (sum_i t_ci)^2``.

    Sudre et al. 2017, "Generalised Dice overlap as a deep learning loss function for highly
    unbalanced segmentations" (DLMIA), eq. (2)::

        GDL = 1 - 2 (sum_c w_c sum_i p_ci t_ci + smooth) / (sum_c w_c sum_i (p_ci + t_ci) + smooth)

    Sums run over the valid pixels of the whole batch (or of each image with ``per_image``, then
    averaged over images).

    Absent classes: ``w_c`` is infinite for a class with no reference pixel. As NiftyNet and MONAI
    do, such a class takes the largest weight of the present classes (so predicting it is still
    penalised, as much as the rarest present class). If no class is present the loss is 0 (for that
    image with ``per_image``), with the gradient kept.

    In binary mode the background enters as a second class, as in the paper's two-class
    experiments: without it the weights would cancel and GDL would reduce to Dice. The loss has
    its own class weights, so it takes no ``weight`` argument.

    Args:
        mode: ``"binary"``, ``"multiclass"`` (softmax) or ``"multilabel"`` (sigmoid per channel).
        ignore_index: target value of pixels excluded from every sum.
        smooth: added to numerator and denominator (MONAI's ``smooth_nr = smooth_dr``); the weights
            are tiny (1 / pixels^2), so keep it small or 0.
        eps: lower bound of the denominator.
        per_image: one loss per image, averaged, instead of one over the batch.
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
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        per_image: bool = False,
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.ignore_index = ignore_index
        self.smooth, self.eps = float(smooth), float(eps)
        self.per_image = per_image
        self.from_logits = from_logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        flat = flatten(logits, target, self.mode, self.ignore_index)
        probs = probabilities(flat.logits, self.mode, self.from_logits)
        ref = flat.target
        if self.mode == "binary":
            probs = torch.cat([1 - probs, probs], dim=1)
            ref = torch.cat([flat.valid - ref, ref], dim=1)
        probs = probs * flat.valid
        dims = (2,) if self.per_image else (0, 2)
        inter = (probs * ref).sum(dims)
        mass = probs.sum(dims) + ref.sum(dims)
        ref_sum = ref.sum(dims)
        present = ref_sum > 0
        weight = torch.where(present, 1.0 / ref_sum.clamp_min(1) ** 2, torch.zeros_like(ref_sum))
        weight = torch.where(present, weight, weight.amax(dim=-1, keepdim=True))
        numerator = 2 * (weight * inter).sum(-1) + self.smooth
        denominator = ((weight * mass).sum(-1) + self.smooth).clamp_min(self.eps)
        loss = 1.0 - numerator / denominator
        return torch.where(present.any(-1), loss, torch.zeros_like(loss)).mean()
