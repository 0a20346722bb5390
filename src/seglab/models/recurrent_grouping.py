"""Differentiable recurrent mean-shift grouping (Kong & Fowlkes, "Recurrent pixel embedding for
instance grouping", CVPR 2018, Sec. 3.2).

Gaussian blurring mean-shift (GBMS) moves *all* points at once towards the kernel-weighted mean
of the current points. With the points as the columns of ``X`` (E x P), the kernel matrix
``K_ij = k(x_i, x_j)`` and ``D = diag(K^T 1)``, one step is

    X <- (1 - eta) X + eta X K D^{-1}

and, for the von Mises-Fisher kernel ``k(x, y) = exp(delta x . y)`` on unit vectors, the points
are projected back onto the sphere after every step. Unrolled for a few iterations the module is
an ordinary differentiable function of the embeddings, so a loss applied to every iterate trains
the network to produce embeddings that this grouping pulls into tight, separated clusters.

Kernels: ``"vmf"`` normalises the points and uses ``exp(delta x . y)`` with
``delta = 1 / bandwidth^2``; ``"gaussian"`` uses ``exp(-||x - y||^2 / (2 bandwidth^2))`` on the
raw points. On unit vectors ``||x - y||^2 = 2 - 2 x . y``, so the two kernels differ only by a
factor that ``D^{-1}`` cancels: vmf is the gaussian kernel on the sphere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError, unknown_choice

KERNELS = ("vmf", "gaussian")


class RecurrentMeanShift(nn.Module):
    """Unrolled, differentiable blurring mean-shift on sampled pixel embeddings.

    Args:
        n_iter: number of unrolled mean-shift steps.
        bandwidth: kernel width (``delta = 1 / bandwidth^2`` for vmf).
        kernel: ``"vmf"`` (unit-sphere embeddings, the paper's choice) or ``"gaussian"``.
        eta: step size; 1 is the plain mean-shift step.

    Shape:
        - points: ``P x E`` or ``N x P x E`` (one independent set per image).
        - mask: optional ``N x P`` (or ``P``) bool; False points neither move others nor count.
        - output: list of ``n_iter + 1`` tensors shaped like ``points``: the (normalised) input
          followed by the points after each step.
    """

    def __init__(self, *, n_iter: int = 3, bandwidth: float = 0.5, kernel: str = "vmf", eta: float = 1.0) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise unknown_choice("grouping kernel", kernel, KERNELS)
        if n_iter < 0 or bandwidth <= 0 or not 0 < eta <= 1:
            raise ConfigError(f"need n_iter >= 0, bandwidth > 0 and 0 < eta <= 1; got {n_iter}, {bandwidth}, {eta}")
        self.n_iter, self.bandwidth, self.kernel, self.eta = n_iter, float(bandwidth), kernel, float(eta)

    def kernel_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``K`` for a batch of point sets ``N x P x E`` -> ``N x P x P`` (log-domain stable)."""
        if self.kernel == "vmf":
            logits = (x @ x.transpose(1, 2) - 1.0) / self.bandwidth**2  # exp(delta (x.y - 1))
        else:
            sq = x.square().sum(-1)
            d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * x @ x.transpose(1, 2)).clamp_min(0.0)
            logits = -d2 / (2.0 * self.bandwidth**2)
        return logits.exp()

    def step(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One blurring mean-shift step ``X <- (1 - eta) X + eta X K D^{-1}`` (batched)."""
        k = self.kernel_matrix(x)
        if mask is not None:
            k = k * mask.unsqueeze(1).to(k.dtype)  # masked points pull nobody
        # in row layout (points as rows) X K D^{-1} is D^{-1} K^T X; K is symmetric
        shifted = (k @ x) / k.sum(2, keepdim=True).clamp_min(1e-12)
        x = (1.0 - self.eta) * x + self.eta * shifted
        return F.normalize(x, dim=-1) if self.kernel == "vmf" else x

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        single = points.ndim == 2
        x = points.unsqueeze(0) if single else points
        if mask is not None and mask.ndim == 1:
            mask = mask.unsqueeze(0)
        if self.kernel == "vmf":
            x = F.normalize(x, dim=-1)
        out = [x]
        for _ in range(self.n_iter):
            x = self.step(x, mask)
            out.append(x)
        return [o.squeeze(0) for o in out] if single else out

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, bandwidth={self.bandwidth}, kernel={self.kernel!r}, eta={self.eta}"
