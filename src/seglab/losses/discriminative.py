"""Discriminative loss for pixel embeddings (De Brabandere, Neven & Van Gool 2017).

"Semantic instance segmentation with a discriminative loss function", eq. (1)-(4). For an image
with C instances (background id 0 excluded), centres mu_c = mean of the embeddings of instance c:

    L_var  = 1/C sum_c 1/N_c sum_{i in c} [ ||mu_c - x_i|| - delta_v ]_+^2      (pull to centre)
    L_dist = 1/(C(C-1)) sum_{cA != cB} [ 2 delta_d - ||mu_cA - mu_cB|| ]_+^2   (push centres apart)
    L_reg  = 1/C sum_c ||mu_c||                                                (keep centres small)
    L      = alpha L_var + beta L_dist + gamma L_reg

Each term is computed per image and averaged over the N images of the batch; an image without
instances contributes 0 to every term, an image with one instance has no distance term (0).

Spatial embeddings (``coordinates``, Novotny et al. 2018, see :mod:`seglab.instances.embedding`):
the pixels' positions are added to the learned embeddings for L_var and L_dist, which depend on
differences only; L_reg keeps the centres of the *learned* embeddings small (an offset field whose
mean per instance stays near 0), not those of the sums, which would depend on where the map's
origin is. The loss is therefore unchanged by a common shift of the coordinates: a patch scores
the same wherever it was cut from.

Vectorisation: an instance is the pair (image, id). All pairs of the batch get one segment number
(``torch.unique`` of ``image * (max_id + 1) + id``), so instances of different images never mix and
ids may be arbitrary. Centres and per-instance means are segment sums (``index_add``) divided by
counts; the distance term takes the pairs of distinct centres of the same image from a block mask
on the K x K matrix of all centres. There is no Python loop over instances or images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError
from seglab.losses._inputs import LossInputError


def _segment_mean(values: torch.Tensor, segment: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (M) per segment (``segment`` in [0, K)), ``count`` (K) members each."""
    total = values.new_zeros(count.shape[0]).index_add(0, segment, values)
    return total / count.clamp_min(1)


def _check(embeddings: torch.Tensor, instances: torch.Tensor) -> None:
    if embeddings.ndim != 4 or not embeddings.is_floating_point():
        raise LossInputError(
            f"DiscriminativeLoss expects float embeddings N x E x H x W; got {tuple(embeddings.shape)}"
        )
    n, _, h, w = embeddings.shape
    if instances.shape != (n, h, w):
        raise LossInputError(
            f"DiscriminativeLoss expects an instance map N x H x W = {(n, h, w)} for embeddings "
            f"{tuple(embeddings.shape)}; got {tuple(instances.shape)}"
        )
    if instances.is_floating_point() or instances.dtype == torch.bool:
        raise LossInputError(f"the instance map must be an integer tensor, got {instances.dtype}")
    if (instances < 0).any():
        raise LossInputError(
            "the instance map has negative ids; use 0 for background, >0 for instances"
        )


class DiscriminativeLoss(nn.Module):
    """Pull embeddings to their instance centre, push centres apart, keep centres near the origin.

    Args:
        delta_v: pull margin: pixels within ``delta_v`` of their centre cost nothing.
        delta_d: push margin: centres more than ``2 delta_d`` apart cost nothing. The paper
            requires ``delta_d > delta_v`` (and ``> 2 delta_v`` for clustering by threshold).
        alpha: weight of L_var.
        beta: weight of L_dist.
        gamma: weight of L_reg.

    Shape:
        - embeddings: N x E x H x W float.
        - instances: N x H x W integer, 0 = background, other ids arbitrary (not contiguous).
        - coordinates (optional): (N x) E x H x W added to the embeddings for L_var and L_dist
          (:func:`seglab.instances.embedding.coordinate_channels`); L_reg ignores them.
        - output: scalar, or with ``return_components=True`` a dict of scalars
          ``loss, var, dist, reg`` (the three terms unweighted).

    After each call ``last_components`` holds the same values as floats, for logging.
    """

    def __init__(
        self,
        *,
        delta_v: float = 0.5,
        delta_d: float = 1.5,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.001,
    ) -> None:
        super().__init__()
        if delta_v < 0 or delta_d <= delta_v:
            raise ConfigError(
                f"need 0 <= delta_v < delta_d, got delta_v={delta_v}, delta_d={delta_d}"
            )
        self.delta_v, self.delta_d = float(delta_v), float(delta_d)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.last_components: dict[str, float] = {}

    def forward(
        self, embeddings: torch.Tensor, instances: torch.Tensor, *, coordinates: torch.Tensor | None = None,
        return_components: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Return the loss (see the class docstring for shapes)."""
        _check(embeddings, instances)
        if coordinates is not None and tuple(coordinates.shape[-3:]) != tuple(embeddings.shape[1:]):
            raise LossInputError(
                f"coordinates {tuple(coordinates.shape)} do not match embeddings {tuple(embeddings.shape)}"
            )
        var, dist, reg = self.terms(embeddings, instances, coordinates)
        loss = self.alpha * var + self.beta * dist + self.gamma * reg
        parts = {"loss": loss, "var": var, "dist": dist, "reg": reg}
        self.last_components = {k: float(v.detach()) for k, v in parts.items()}
        return parts if return_components else loss

    def terms(
        self, embeddings: torch.Tensor, instances: torch.Tensor, coordinates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L_var, L_dist, L_reg averaged over the batch (unweighted); see :meth:`forward`."""
        n, e = embeddings.shape[:2]
        pixels = embeddings.reshape(n, e, -1).transpose(1, 2)  # N x P x E
        ids = instances.reshape(n, -1).long()
        foreground = ids > 0
        zero = embeddings.sum() * 0
        if not foreground.any():
            return zero, zero, zero
        image = torch.arange(n, device=ids.device).unsqueeze(1).expand_as(ids)[foreground]
        key = image * (ids.max() + 1) + ids[foreground]
        keys, segment = torch.unique(key, return_inverse=True)  # sorted: grouped by image
        segment_image = keys // (ids.max() + 1)
        learned = pixels[foreground]  # M x E
        size = torch.bincount(segment, minlength=keys.numel()).to(learned.dtype)

        def centre(v: torch.Tensor) -> torch.Tensor:
            return v.new_zeros(keys.numel(), e).index_add(0, segment, v) / size.unsqueeze(1)

        learned_centres = centre(learned)
        x, centres = learned, learned_centres
        if coordinates is not None:
            positions = coordinates.expand_as(embeddings).reshape(n, e, -1).transpose(1, 2)[foreground]
            x, centres = learned + positions, learned_centres + centre(positions)
        instances_per_image = torch.bincount(segment_image, minlength=n).to(x.dtype)

        pull = F.relu(torch.linalg.vector_norm(x - centres[segment], dim=1) - self.delta_v) ** 2
        var = _segment_mean(_segment_mean(pull, segment, size), segment_image, instances_per_image)
        reg = _segment_mean(
            torch.linalg.vector_norm(learned_centres, dim=1), segment_image, instances_per_image
        )

        same_image = segment_image.unsqueeze(0) == segment_image.unsqueeze(1)
        same_image.fill_diagonal_(False)
        a, b = same_image.nonzero(as_tuple=True)  # ordered pairs of distinct instances
        gap = torch.linalg.vector_norm(centres[a] - centres[b], dim=1)
        push = F.relu(2 * self.delta_d - gap) ** 2
        pairs = instances_per_image * (instances_per_image - 1)
        dist = _segment_mean(push, segment_image[a], pairs)
        return var.mean(), dist.mean(), reg.mean()
