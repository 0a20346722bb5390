"""The LightningModule of the embedding routes: foreground head + pixel embeddings.

:class:`EmbeddingModule` is a :class:`~seglab.engine.module.SegmentationModule` whose
``aux_loss`` adds the embedding route's own loss to the foreground classification loss:

``embedding``  :class:`~seglab.losses.DiscriminativeLoss` on ``out["embedding"]``
               (De Brabandere et al. 2017).
``seeds``      Fathi et al. 2017: :class:`~seglab.losses.FathiPairLoss` on the embeddings plus
               :class:`~seglab.losses.SeedinessLoss` on ``out["seediness"]``.
``recurrent``  Kong & Fowlkes 2018: K foreground pixels sampled per image are grouped by
               :class:`~seglab.models.recurrent_grouping.RecurrentMeanShift`, and the
               calibrated-cosine pair loss is applied to the input and to every iterate
               (mean over the ``n_iter + 1`` stages).

Validation is the base class's: ``probabilities`` stacks the foreground probability and the heads
and ``decode_instances`` runs the recipe's decoder (``embedding_meanshift`` / ``embedding_seeds``
from :mod:`seglab.instances.embedding`). The decoder options that follow from how the route was
trained are filled into the checkpoint metadata unless the run set them: ``delta_v`` for the
discriminative route, ``normalize=True`` and a sphere-sized ``bandwidth`` for the recurrent one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from seglab.engine.module import SegmentationModule
from seglab.errors import ConfigError
from seglab.instances.embedding import coordinate_channels, with_coordinates
from seglab.losses.discriminative import DiscriminativeLoss
from seglab.losses.embedding import (
    FathiPairLoss,
    SeedinessLoss,
    gather_pixels,
    kong_pair_loss,
    near_pairs,
    sample_pixels,
)
from seglab.models.recurrent_grouping import RecurrentMeanShift
from seglab.spec.recipes import EMBEDDING_METHODS

EMBEDDING_ROUTES = tuple(EMBEDDING_METHODS)
DEFAULT_COORD_UNIT = 5.0  # pixels per embedding unit of the spatial routes (embedding, seeds)
DEFAULT_PAIR_RADIUS = 32.0  # pixels: the recurrent route's pair loss sees nearby pairs only


def check_route_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The config's ``embedding_kwargs``, checked against :class:`EmbeddingModule`'s options."""
    import inspect

    valid = [p for p in inspect.signature(EmbeddingModule.__init__).parameters if p not in ("self", "kwargs")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"unknown embedding_kwargs {unknown}; valid: {', '.join(valid)}")
    return dict(kwargs)


class EmbeddingModule(SegmentationModule):
    """SegmentationModule + the embedding losses of the recipe's method.

    Args:
        embedding_loss_weight: weight of the embedding loss (discriminative / pair loss).
        seediness_loss_weight: weight of the seediness loss (``seeds`` only).
        delta_v, delta_d: the discriminative loss's margins (``embedding`` only).
        pair_pixels: pixels sampled per image for the pair losses (``seeds``, ``recurrent``).
        margin: Kong & Fowlkes's alpha (``recurrent``): pixels of different instances are pushed
            to a calibrated similarity ``(1 + cos) / 2 <= margin``. 0.7 here (cos <= 0.4); the
            paper's 0.5 (orthogonal) fits fewer mutually dissimilar directions on the sphere
            (3-min bench, 32 channels: AJI 0.62 at 0.7, 0.57 at 0.5).
        grouping_iters, grouping_bandwidth: the unrolled mean-shift (``recurrent``). One step by
            default: the loss then weighs the raw embeddings, which the decoder clusters, as much
            as the grouped ones, and a step is faster (3-min bench: PQ 0.62-0.64 with 1 step,
            0.55-0.58 with 3).
        pair_radius: the pair loss (``recurrent``) sees only pixel pairs at most this many pixels
            apart; 0 = all pairs (the paper); ``None`` = 32. Far instances need not differ in
            embedding: the decoder gives each spatially separate part of a cluster its own id.
            (3-min bench, 8 channels, margin 0.5: all pairs AJI 0.24, within 32 px 0.49.)
        coord_unit: spatial embeddings (Novotny et al. 2018, see :mod:`seglab.instances.embedding`):
            pixels per embedding unit added to the first two embedding channels in the loss and
            the decoder; 0 = plain embeddings. ``None`` = 5 px for ``embedding`` and ``seeds``
            (nuclei of about 10-20 px across: neighbours at the push margin), 0 for
            ``recurrent``, whose embeddings live on the unit sphere.
        **kwargs: :class:`SegmentationModule`'s arguments (model, recipe, loss, meta, lr, ...).
    """

    def __init__(
        self,
        *,
        embedding_loss_weight: float = 1.0,
        seediness_loss_weight: float = 1.0,
        delta_v: float = 0.5,
        delta_d: float = 1.5,
        pair_pixels: int = 256,
        margin: float = 0.7,
        grouping_iters: int = 1,
        grouping_bandwidth: float = 0.5,
        pair_radius: float | None = None,
        coord_unit: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["meta"] = copy.deepcopy(kwargs["meta"])
        super().__init__(**kwargs)
        if self.recipe.method not in EMBEDDING_ROUTES:
            raise ConfigError(f"EmbeddingModule needs method embedding, seeds or recurrent, got {self.recipe.method!r}")
        self.embedding_loss_weight = float(embedding_loss_weight)
        self.seediness_loss_weight = float(seediness_loss_weight)
        self.pair_pixels, self.margin = int(pair_pixels), float(margin)
        self.pair_radius = DEFAULT_PAIR_RADIUS if pair_radius is None else float(pair_radius)
        self.discriminative = DiscriminativeLoss(delta_v=delta_v, delta_d=delta_d)
        self.pair_loss = FathiPairLoss(pixels=pair_pixels)
        self.seediness_loss = SeedinessLoss()
        self.grouping = RecurrentMeanShift(n_iter=grouping_iters, bandwidth=grouping_bandwidth)
        if coord_unit is None:
            coord_unit = 0.0 if self.recipe.method == "recurrent" else DEFAULT_COORD_UNIT
        if coord_unit < 0:
            raise ConfigError(f"coord_unit must be >= 0 (0 = plain embeddings), got {coord_unit}")
        self.coord_unit = float(coord_unit)
        self._fill_decoder_defaults(delta_v)

    def _fill_decoder_defaults(self, delta_v: float) -> None:
        decoder = self.meta.get("decoder")
        if not decoder:
            return
        kwargs = decoder.setdefault("kwargs", {})
        kwargs["coord_unit"] = self.coord_unit  # how the embeddings were trained, not a choice
        if self.recipe.method == "embedding":
            kwargs.setdefault("delta_v", delta_v)
        elif self.recipe.method == "recurrent":
            kwargs.setdefault("normalize", True)
            # trained: same instance cos -> 1, others (1 + cos) / 2 <= margin, i.e. unit vectors at
            # least 2 sqrt(1 - margin) apart (sqrt(2) at the paper's 0.5): half of that
            kwargs.setdefault("bandwidth", round(math.sqrt(1.0 - self.margin), 4))

    # -- losses -------------------------------------------------------------------------------
    def aux_loss(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """The route's embedding loss (see the module docstring), added to the base aux loss."""
        total = super().aux_loss(out, batch)
        learned = out["embedding"].float()
        emb = with_coordinates(learned, self.coord_unit)
        instances = batch["instances"]
        method = self.recipe.method
        if method == "embedding":  # regularises the learned offsets, not the positions added to them
            coordinates = coordinate_channels(learned, self.coord_unit)
            part = self.embedding_loss_weight * self.discriminative(learned, instances, coordinates=coordinates)
        elif method == "seeds":
            valid = batch["foreground"] != 255 if "foreground" in batch else None
            part = self.embedding_loss_weight * self.pair_loss(emb, instances)
            part = part + self.seediness_loss_weight * self.seediness_loss(
                out["seediness"].float(), emb, instances, valid
            )
        else:
            part = self.embedding_loss_weight * self.recurrent_loss(emb, instances)
        if self.training and self._trainer is not None:
            self.log("train/embedding_loss", part.detach(), on_step=True, on_epoch=True, batch_size=len(emb), sync_dist=True)
        return total + part

    def recurrent_loss(self, embeddings: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """Kong & Fowlkes pair loss on sampled pixels before and after each grouping step.

        Shape:
            embeddings: N x E x H x W; instances: N x H x W (0 = background) -> scalar.
        """
        index, valid = sample_pixels(instances, self.pair_pixels, balanced=True)
        labels = torch.where(valid, instances.reshape(len(index), -1).gather(1, index), 0)
        pairs = near_pairs(index, instances.shape[-1], self.pair_radius) if self.pair_radius > 0 else None
        stages = self.grouping(gather_pixels(embeddings, index), valid)
        return torch.stack([kong_pair_loss(x, labels, alpha=self.margin, pairs=pairs) for x in stages]).mean()
