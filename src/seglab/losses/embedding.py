"""Pairwise pixel-embedding losses: Fathi et al. 2017 (seeds) and Kong & Fowlkes 2018 (recurrent).

Both compare embeddings of *pairs* of pixels, so they work on K pixels sampled per image
(:func:`sample_pixels`) and K x K pair matrices; background pixels (id 0) take no part, the
foreground head separates them. Every loss here is batched over images and over pairs.

Instance-size weighting (both papers): pixel i of an instance with n_i sampled pixels gets
``w_i = 1 / n_i`` and pair (i, j) gets ``w_ij = w_i w_j``, so every instance weighs the same
whatever its area. Images without instances, or with a single sampled pixel, add nothing; the
batch loss is the mean over images that have pairs (0, connected to the graph, if none has).

**Fathi et al.**, "Semantic instance segmentation via deep metric learning" (2017), eq. (1)-(2):
``sigma_ij = 2 / (1 + exp(||e_i - e_j||^2))`` (1 for equal embeddings, -> 0 far apart) and the
logistic loss ``-[y_ij log sigma_ij + (1 - y_ij) log(1 - sigma_ij)]`` with ``y_ij = 1`` when i, j
are in the same instance. What we implement: the weighted mean over ordered pairs i != j, with
the same-instance and the different-instance pairs each normalised to total weight 1/2 (so one
large image with many instances is not all negatives).

**Seediness** (Fathi et al., Sec. 3.2): the seediness of pixel p regresses the quality of the mask
that p would produce as a seed. What we implement: for K sampled foreground seeds, the mask is
``{q in the ground-truth foreground : sigma(p, q) > 0.5}`` (the decoder's rule), its IoU with p's
instance is measured on a uniform sample of foreground pixels, and the target is that IoU
(no gradient); the loss is binary cross-entropy of the seediness logit at the seeds against it,
plus BCE towards 0 on every background pixel (mean of the two parts).

**Kong & Fowlkes**, "Recurrent pixel embedding for instance grouping" (CVPR 2018), Sec. 3.1:
embeddings on the unit sphere, calibrated cosine similarity ``s_ij = (1 + x_i . x_j) / 2`` and
``l_ij = 1[y_i = y_j] (1 - s_ij) + 1[y_i != y_j] [s_ij - alpha]_+`` with margin ``alpha``
(0.5 in the paper: different instances only need to be orthogonal or farther), averaged with the
weights ``w_ij`` over ordered pairs i != j, the same-instance and different-instance pairs each
normalised to total weight 1/2 as for Fathi's loss. (With the plain weighted mean, a patch with
C nuclei has C(C-1) negative against C positive instance pairs; the negatives of a random
initialisation already sit near the margin, so the pull term was too weak to learn in short
CPU runs: within-instance spread stayed at random level.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sample_pixels(
    instances: torch.Tensor, k: int, *, balanced: bool = True, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to ``k`` foreground pixels per image, without replacement.

    With ``balanced`` each pixel's chance is inversely proportional to its instance's area
    (weighted sampling without replacement by Efraimidis-Spirakis keys), so small instances are
    sampled about as often as large ones.

    Shape:
        instances: N x H x W integer (0 = background) -> flat pixel indices N x K (long) and
        a validity mask N x K (False where the image has fewer than K foreground pixels).
    """
    n = instances.shape[0]
    ids = instances.reshape(n, -1).long()
    k = min(k, ids.shape[1])
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    key = u.clamp_min(1e-12).log()  # keys log(u) / w: larger is chosen first
    if balanced and (ids > 0).any():
        image = torch.arange(n, device=ids.device).unsqueeze(1) * (ids.max() + 1)
        _, inverse, counts = torch.unique(image + ids, return_inverse=True, return_counts=True)
        key = key * counts[inverse].to(key.dtype)  # w = 1 / area
    key = torch.where(ids > 0, key, torch.full_like(key, -math.inf))
    top = key.topk(k, dim=1).indices
    return top, ids.gather(1, top) > 0


def near_pairs(index: torch.Tensor, width: int, radius: float) -> torch.Tensor:
    """Pairs of sampled pixels at most ``radius`` pixels apart.

    Shape:
        index: N x K flat pixel indices of a map ``width`` pixels wide -> N x K x K bool.
    """
    pos = torch.stack([index // width, index % width], -1).to(torch.float32)
    return torch.cdist(pos, pos) <= radius


def gather_pixels(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of ``maps`` (N x C x H x W) at flat pixel indices (N x K) -> N x K x C."""
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1)
    return flat.gather(2, index.unsqueeze(1).expand(-1, maps.shape[1], -1)).transpose(1, 2)


def _pair_weights(labels: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``w_i w_j`` over valid ordered pairs i != j, and the same-instance matrix (N x K x K)."""
    valid = labels > 0
    same = labels.unsqueeze(2) == labels.unsqueeze(1)
    count = (same & valid.unsqueeze(1)).sum(2).clamp_min(1)  # sampled pixels of i's instance
    w = torch.where(valid, 1.0 / count.to(dtype), torch.zeros_like(count, dtype=dtype))
    eye = torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    weights = (w.unsqueeze(2) * w.unsqueeze(1)).masked_fill(eye, 0.0)
    return weights, same


def _image_mean(per_image: torch.Tensor, has_pairs: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    if not has_pairs.any():
        return anchor.sum() * 0
    return per_image[has_pairs].mean()


def fathi_pair_loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fathi et al.'s weighted logistic pair loss on sampled embeddings (module docstring).

    Shape:
        x: N x K x E embeddings; labels: N x K instance ids (0 = not a sampled foreground pixel).
    """
    weights, same = _pair_weights(labels, x.dtype)
    d2 = (x.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1)
    pos = F.softplus(d2) - math.log(2.0)  # -log sigma
    d2n = d2.clamp_min(1e-6)
    neg = torch.log1p(torch.exp(-d2n)) - torch.log(-torch.expm1(-d2n))  # -log(1 - sigma)
    return _balanced_mean(torch.where(same, pos, neg), weights, same, x)


def _balanced_mean(loss: torch.Tensor, weights: torch.Tensor, same: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Per image: half the weighted mean over same-instance pairs, half over different ones (a
    kind that is absent leaves the other with weight 1); then the mean over images with pairs."""
    wp, wn = weights * same, weights * ~same
    sp, sn = wp.sum((1, 2)), wn.sum((1, 2))
    per_image = 0.5 * (wp * loss).sum((1, 2)) / sp.clamp_min(1e-12) + 0.5 * (wn * loss).sum((1, 2)) / sn.clamp_min(1e-12)
    per_image = per_image * torch.where((sp > 0) & (sn > 0), 1.0, 2.0)
    return _image_mean(per_image, sp + sn > 0, anchor)


def kong_pair_loss(
    x: torch.Tensor, labels: torch.Tensor, *, alpha: float = 0.5, pairs: torch.Tensor | None = None
) -> torch.Tensor:
    """Kong & Fowlkes's calibrated-cosine pair loss with margin ``alpha`` (module docstring).

    Embeddings are L2-normalised here (pass them raw or already on the sphere). ``pairs``
    (optional) keeps only the pairs marked True, e.g. pixels near each other
    (:func:`near_pairs`); the weights ``w_i`` still count every sampled pixel of i's instance.

    Shape:
        x: N x K x E embeddings; labels: N x K instance ids (0 = not a sampled foreground pixel);
        pairs: N x K x K bool.
    """
    weights, same = _pair_weights(labels, x.dtype)
    if pairs is not None:
        weights = weights * pairs.to(weights.dtype)
    x = F.normalize(x, dim=-1)
    s = 0.5 * (1.0 + x @ x.transpose(1, 2))
    loss = torch.where(same, 1.0 - s, F.relu(s - alpha))
    return _balanced_mean(loss, weights, same, x)


class FathiPairLoss(nn.Module):
    """Fathi et al. 2017 pairwise similarity loss on ``pixels`` sampled foreground pixels per image.

    Shape:
        embeddings: N x E x H x W float; instances: N x H x W integer (0 = background) -> scalar.
    """

    def __init__(self, *, pixels: int = 256, balanced: bool = True) -> None:
        super().__init__()
        self.pixels, self.balanced = pixels, balanced

    def forward(self, embeddings: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        index, valid = sample_pixels(instances, self.pixels, balanced=self.balanced)
        labels = torch.where(valid, instances.reshape(len(index), -1).gather(1, index), 0)
        return fathi_pair_loss(gather_pixels(embeddings, index), labels)


class KongPairLoss(nn.Module):
    """Kong & Fowlkes 2018 pair loss on ``pixels`` sampled foreground pixels per image.

    Shape:
        embeddings: N x E x H x W float; instances: N x H x W integer (0 = background) -> scalar.
    """

    def __init__(self, *, pixels: int = 256, alpha: float = 0.5, balanced: bool = True) -> None:
        super().__init__()
        self.pixels, self.alpha, self.balanced = pixels, alpha, balanced

    def forward(self, embeddings: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        index, valid = sample_pixels(instances, self.pixels, balanced=self.balanced)
        labels = torch.where(valid, instances.reshape(len(index), -1).gather(1, index), 0)
        return kong_pair_loss(gather_pixels(embeddings, index), labels, alpha=self.alpha)


def seed_iou_targets(
    seed_emb: torch.Tensor, seed_ids: torch.Tensor, ref_emb: torch.Tensor, ref_ids: torch.Tensor,
    threshold: float = 0.5,
) -> torch.Tensor:
    """IoU of each seed's mask ``{q : sigma(seed, q) > threshold}`` with the seed's instance.

    Both sets are measured on the reference pixels (a uniform sample of the foreground).

    Shape:
        seed_emb N x S x E, seed_ids N x S, ref_emb N x R x E, ref_ids N x R (0 = not valid)
        -> N x S in [0, 1].
    """
    d2 = torch.cdist(seed_emb, ref_emb).square()
    mask = (2.0 * torch.sigmoid(-d2) > threshold) & (ref_ids > 0).unsqueeze(1)
    truth = (seed_ids.unsqueeze(2) == ref_ids.unsqueeze(1)) & (ref_ids > 0).unsqueeze(1)
    inter = (mask & truth).sum(2).float()
    union = (mask | truth).sum(2).float()
    return inter / union.clamp_min(1.0)


class SeedinessLoss(nn.Module):
    """Regress the seediness map towards the IoU each pixel would reach as a seed (module docstring).

    Args:
        seeds: foreground seeds sampled per image.
        reference: uniformly sampled foreground pixels per image on which masks are measured.
        threshold: the decoder's similarity threshold on ``sigma``.

    Shape:
        seediness: N x 1 x H x W logits; embeddings: N x E x H x W; instances: N x H x W
        (0 = background); valid: optional N x H x W bool (False = ignored, e.g. padding) -> scalar.
    """

    def __init__(self, *, seeds: int = 64, reference: int = 1024, threshold: float = 0.5) -> None:
        super().__init__()
        self.seeds, self.reference, self.threshold = seeds, reference, threshold

    def forward(
        self, seediness: torch.Tensor, embeddings: torch.Tensor, instances: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n = instances.shape[0]
        flat_ids = instances.reshape(n, -1).long()
        logits = seediness.reshape(n, -1)
        s_idx, s_ok = sample_pixels(instances, self.seeds, balanced=True)
        r_idx, r_ok = sample_pixels(instances, self.reference, balanced=False)
        s_ids = torch.where(s_ok, flat_ids.gather(1, s_idx), 0)
        r_ids = torch.where(r_ok, flat_ids.gather(1, r_idx), 0)
        with torch.no_grad():
            target = seed_iou_targets(gather_pixels(embeddings, s_idx), s_ids, gather_pixels(embeddings, r_idx),
                                      r_ids, self.threshold)
        seed_logits = logits.gather(1, s_idx)
        fg_part = F.binary_cross_entropy_with_logits(seed_logits[s_ok], target[s_ok]) if s_ok.any() else None
        background = flat_ids == 0
        if valid is not None:
            background &= valid.reshape(n, -1)
        bg_part = (F.binary_cross_entropy_with_logits(logits[background], torch.zeros_like(logits[background]))
                   if background.any() else None)
        parts = [p for p in (fg_part, bg_part) if p is not None]
        return torch.stack(parts).mean() if parts else seediness.sum() * 0
