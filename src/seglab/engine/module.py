"""The LightningModule: model + loss + validation metrics for one recipe.

Training sees normalised patches and the recipe's targets; validation runs whole images, turns
logits into probabilities, decodes instances (instance task) and scores them with
:class:`seglab.metrics.InstanceMetrics` (AJI, PQ) or a confusion matrix (semantic task).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from seglab.engine.optim import budget_optimizer
from seglab.errors import ConfigError, SeglabError
from seglab.spec.recipes import Recipe, decoder_input


def gather_over_ranks(module: L.LightningModule, obj: Any) -> list[Any]:
    """Every DDP rank's (picklable) ``obj``, in rank order; ``[obj]`` on one process."""
    import torch.distributed as dist

    if module.trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def once_per_image(module: L.LightningModule, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-image validation records, each image once (identified by ``"stem"``).

    Under DDP, Lightning's ``DistributedSampler`` pads the validation set so that every rank gets
    as many images: the padding repeats images that another rank scores too, and pooling the
    ranks' sums would count those twice. Every rank holds the same weights, so a repeat scores the
    same and the first record of a stem is kept. Records without a stem are all kept.
    """
    unique: dict[Any, dict[str, Any]] = {}
    for rank, rank_records in enumerate(gather_over_ranks(module, records)):
        for i, record in enumerate(rank_records):
            stem = record.get("stem")
            unique.setdefault((rank, i) if stem is None else stem, record)
    return list(unique.values())


def image_records(batch: dict[str, Any], scores: list[dict[str, Any]], **shared: Any) -> list[dict[str, Any]]:
    """One record per image of ``batch``: its stem (``None`` if the batch has none), ``scores``, ``shared``."""
    stems = batch.get("stem") or [None] * len(scores)
    return [{"stem": stem, **shared, **score} for stem, score in zip(stems, scores, strict=True)]


def instance_record(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """One validation image's scores (what :func:`log_instance_scores` averages)."""
    from seglab.metrics import aji, panoptic_quality

    return {"aji": aji(gt, pred), "pq": panoptic_quality(gt, pred)["pq"]}


def log_instance_scores(module: L.LightningModule, records: list[dict[str, Any]]) -> None:
    """Log ``val/aji`` and ``val/pq``: the means over ``records``, one per image (:func:`once_per_image`).

    Every rank holds the same records (gathered over ranks), so ``sync_dist``'s mean over ranks
    keeps the value; without it Lightning warns about epoch-level values under DDP.
    """
    count = max(len(records), 1)
    for key in ("aji", "pq"):
        module.log(f"val/{key}", sum(r[key] for r in records) / count, prog_bar=True, sync_dist=True)


class BudgetModule(L.LightningModule):
    """What every seglab LightningModule shares: AdamW over the budget, metadata in checkpoints.

    Args:
        model: the network trained.
        meta: the checkpoint's ``seglab`` metadata (saved with every checkpoint).
        lr, weight_decay, schedule, warmup: AdamW and its learning-rate schedule.
        progress: callable returning the share of the budget used (0..1); the trainer sets it.
        encoder_lr_scale: ``model.encoder`` learns at ``lr`` times this; 0 freezes its weights
            (no gradient, left out of the optimizer; its batch-norm statistics still adapt).
    """

    def __init__(
        self, *, model: torch.nn.Module, meta: dict[str, Any], lr: float, weight_decay: float = 1e-4,
        schedule: str = "onecycle", warmup: float = 0.05, progress=None, encoder_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.meta = meta
        self.lr, self.weight_decay, self.schedule, self.warmup = lr, weight_decay, schedule, warmup
        self.encoder_lr_scale = float(encoder_lr_scale)
        if self.encoder_lr_scale != 1.0 and not isinstance(getattr(model, "encoder", None), torch.nn.Module):
            raise ConfigError(f"encoder_lr_scale: model {type(model).__name__} has no encoder (model.encoder)")
        if self.encoder_lr_scale == 0.0:
            model.encoder.requires_grad_(False)
        self.progress = progress or (lambda: 0.0)
        self._val_records: list[dict[str, float]] = []

    def configure_optimizers(self) -> dict[str, Any]:
        return budget_optimizer(
            self.model, lr=self.lr, weight_decay=self.weight_decay, schedule=self.schedule,
            warmup=self.warmup, progress=lambda: self.progress(), encoder_lr_scale=self.encoder_lr_scale,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["seglab"] = self.meta


class SegmentationModule(BudgetModule):
    """Wires a seglab model, its loss and its validation metrics.

    Args:
        model: a seglab model (returns logits, or a dict with ``logits`` and extra heads).
        recipe: what the task's targets, heads and decoder are.
        loss: classification loss on ``logits`` vs ``batch[recipe.class_target]``.
        meta: the checkpoint's ``seglab`` metadata (saved with every checkpoint).
        lr, weight_decay, schedule, warmup: AdamW and its learning-rate schedule.
        progress: callable returning the share of the budget used (0..1), for the schedule.
        encoder_lr_scale: see :class:`BudgetModule`.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        recipe: Recipe,
        loss: torch.nn.Module,
        meta: dict[str, Any],
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        schedule: str = "onecycle",
        warmup: float = 0.05,
        progress=None,
        encoder_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(
            model=model, meta=meta, lr=lr, weight_decay=weight_decay, schedule=schedule, warmup=warmup,
            progress=progress, encoder_lr_scale=encoder_lr_scale,
        )
        self.recipe = recipe
        self.loss = loss
        pre = meta["preprocessing"]
        self.register_buffer("mean", torch.tensor(pre["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre["std"]).view(1, -1, 1, 1), persistent=False)

    # -- forward ----------------------------------------------------------------------------
    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalise, run the model and return a dict of named outputs (``logits`` always)."""
        out = self.model(self.normalise(image).contiguous(memory_format=torch.channels_last))
        return out if isinstance(out, dict) else {"logits": out}

    def probabilities(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The decoder's input stack, N x C' x H x W (see :func:`seglab.spec.recipes.decoder_input`)."""
        return decoder_input(out, self.recipe)

    # -- training ---------------------------------------------------------------------------
    def _loss(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        target = batch[self.recipe.class_target]
        total = self.loss(out["logits"], target)
        for i, deep in enumerate(out.get("deep", []) or []):
            total = total + 0.5 ** (i + 1) * self.loss(deep, target)
        return total + self.aux_loss(out, batch)

    def aux_loss(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Loss of the extra heads (subclasses add their own); here: the distance regression."""
        if "distance" not in self.recipe.aux_heads:
            return out["logits"].new_zeros(())
        dist = out["distance"].float().sigmoid()[:, 0]
        valid = batch["foreground"] != 255
        return 2.0 * F.mse_loss(dist[valid], batch["distance"][valid])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch["image"]), batch)
        if not torch.isfinite(loss):
            raise SeglabError(f"loss became {loss.item()} at step {self.global_step}; lower --lr or check the labels")
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["image"]),
                 sync_dist=True)  # the epoch value: the mean over every rank's batches
        return loss

    # -- validation -------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_records = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score every image of the batch on its own (see :meth:`on_validation_epoch_end`).

        The batch's loss is recorded with each of its images (exact for the data module's
        validation batches of one image).
        """
        out = self(batch["image"])
        loss = float(self._loss(out, batch))
        probs = self.probabilities(out)
        if self.recipe.task == "semantic":
            from seglab.metrics import confusion_matrix

            pairs = zip(probs.argmax(1).cpu().numpy(), batch["semantic"].cpu().numpy(), strict=True)
            k = self.recipe.num_classes
            scores = [{"confusion": confusion_matrix(p, t, k, ignore_index=255)} for p, t in pairs]
        else:
            gts = batch["instances"].cpu().numpy()
            scores = [instance_record(g, p) for g, p in zip(gts, self.decode_instances(probs), strict=True)]
        self._val_records += image_records(batch, scores, loss=loss)

    def decode_instances(self, probs: torch.Tensor) -> list[np.ndarray]:
        """Instance maps (H x W int32) from the decoder input stack of a batch."""
        from seglab.instances import decode

        kwargs = self.meta["decoder"]["kwargs"]
        return [decode(self.recipe.decoder, p, **kwargs) for p in probs.cpu().numpy()]

    @torch.inference_mode()
    def predict_instances(self, image: torch.Tensor) -> list[np.ndarray]:
        """``N x C x H x W`` images in [0, 1] -> label maps: instances, or classes (semantic task)."""
        was_training = self.training
        self.eval()
        try:
            probs = self.probabilities(self(image.float()))
        finally:
            self.train(was_training)
        if self.recipe.task == "semantic":
            return list(probs.argmax(1).cpu().numpy())
        return self.decode_instances(probs)

    def on_validation_epoch_end(self) -> None:
        """Data-set scores over every rank's images, each image once (:func:`once_per_image`):
        ``val/loss`` the mean over images; ``val/miou`` and ``val/dice`` from the summed confusion
        matrix (semantic task), else ``val/aji`` and ``val/pq`` the means over images."""
        records = once_per_image(self, self._val_records)
        if records:
            self.log("val/loss", sum(r["loss"] for r in records) / len(records), sync_dist=True)  # same on every rank
        if self.recipe.task == "semantic":
            from seglab.metrics import scores_from_matrix

            matrix = sum((r["confusion"] for r in records), np.zeros((self.recipe.num_classes,) * 2, np.int64))
            scores = scores_from_matrix(matrix)
            self.log("val/miou", float(np.nan_to_num(scores["miou"])), prog_bar=True, sync_dist=True)
            self.log("val/dice", float(np.nan_to_num(scores["mean_dice"])), sync_dist=True)
            return
        log_instance_scores(self, records)

