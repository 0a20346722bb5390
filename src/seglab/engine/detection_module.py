"""The LightningModule of the detect-then-segment route: torchvision Mask R-CNN on instance maps.

Batches are the instance task's ``{"image": N x C x H x W in [0, 1], "instances": N x H x W}``;
the instance maps become boxes + masks (:func:`seglab.data.detection.batch_to_targets`) and the
model's own losses (RPN objectness and box, box classifier and regression, mask) are summed.
Validation predicts whole images, turns the detections into instance maps with overlaps resolved
by score (:func:`seglab.instances.detections.detections_to_instances`) and logs ``val/aji`` and
``val/pq`` as :class:`~seglab.engine.module.SegmentationModule` does. Normalisation is inside the
model (its transform's ``image_mean`` / ``image_std``), so images enter unnormalised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seglab.data.detection import batch_to_targets
from seglab.engine.module import (
    BudgetModule,
    image_records,
    instance_record,
    log_instance_scores,
    once_per_image,
)
from seglab.errors import SeglabError
from seglab.instances.detections import detections_to_instances

DECODER_DEFAULTS = {"score_threshold": 0.5, "mask_threshold": 0.5, "min_size": 0}


class DetectionModule(BudgetModule):
    """Train and validate a torchvision-style Mask R-CNN on instance maps.

    Args:
        model: e.g. :class:`seglab.models.maskrcnn.MaskRCNNModel` (list of images [+ targets] ->
            losses in training, detections in eval).
        meta: the checkpoint's ``seglab`` metadata (saved with every checkpoint); its
            ``decoder.kwargs`` (``score_threshold``, ``mask_threshold``, ``min_size``) drive
            validation decoding.
        lr, weight_decay, schedule, warmup: AdamW and the same budget-driven schedule as
            :class:`SegmentationModule` (``lr`` 1e-3 by default).
        progress: callable returning the share of the budget used (0..1), for the schedule.
    """

    def __init__(self, *, lr: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(lr=lr, **kwargs)  # BudgetModule's fields; detection trains at a lower lr

    # -- forward ----------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """``N x C x H x W`` images in [0, 1] -> detections per image (eval) or a loss dict (train)."""
        return self.model(list(image.float()), targets)

    def decoder_kwargs(self) -> dict[str, Any]:
        return {**DECODER_DEFAULTS, **((self.meta.get("decoder") or {}).get("kwargs") or {})}

    def decode_instances(self, detections: list[dict[str, torch.Tensor]], shape: tuple[int, int]) -> list[np.ndarray]:
        """Instance maps (H x W int32) from the detections of a batch."""
        kwargs = self.decoder_kwargs()
        return [detections_to_instances(d, image_shape=shape, **kwargs) for d in detections]

    @torch.no_grad()
    def predict_instances(self, image: torch.Tensor) -> list[np.ndarray]:
        """``N x C x H x W`` images in [0, 1] -> instance maps (for overlays and quick checks)."""
        was_training = self.training
        self.eval()
        try:
            return self.decode_instances(self(image), tuple(image.shape[-2:]))
        finally:
            self.train(was_training)

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self(batch["image"], batch_to_targets(batch["instances"]))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise SeglabError(f"loss became {loss.item()} at step {self.global_step}; lower --lr or check the labels")
        n = len(batch["image"])
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=True)
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    # -- validation -------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_records = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        detections = self(batch["image"])
        shape = tuple(batch["image"].shape[-2:])
        pairs = zip(batch["instances"].cpu().numpy(), self.decode_instances(detections, shape), strict=True)
        self._val_records += image_records(batch, [instance_record(gt, pred) for gt, pred in pairs])

    def on_validation_epoch_end(self) -> None:
        """``val/aji`` and ``val/pq`` over every rank's images, each image once."""
        log_instance_scores(self, once_per_image(self, self._val_records))

