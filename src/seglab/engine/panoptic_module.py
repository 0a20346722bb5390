"""The panoptic task's LightningModule: one network, an instance head and a class head.

The model is the recipe's U-Net (or any seglab model) with the 3-class instance output
(``logits``: background / interior / boundary) and an extra head ``classes`` over all classes of
``classes.yaml`` (stuff and thing types), returned as a dict of named outputs. Both train jointly:
the run's loss (CE + Dice by default) on the 3-class target plus a class-weighted CE + Dice on
the class map, its weights ``(median pixel share / class pixel share) ** 0.5`` (clipped to
[0.2, 10]) so that rare types (small lymphocytes, few dead cells) weigh about as much as
common ones.

Validation decodes the instances (watershed), fuses them with the class probabilities
(:func:`seglab.instances.panoptic.fuse_panoptic`) and logs, from counts pooled over the
validation images: ``val/panoptic_pq`` (PQ over all classes, panopticapi; the checkpoint
monitor), ``val/pq_things``, ``val/pq_stuff``, ``val/mpq_plus`` (CoNIC); and the instance
scores ``val/aji`` and ``val/pq`` (binary, mean over images).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seglab.engine.module import (
    SegmentationModule,
    image_records,
    instance_record,
    log_instance_scores,
    once_per_image,
)
from seglab.errors import DataError

CLASS_LOSS_WEIGHT = 1.0  # class head loss relative to the instance head's


def panoptic_classes(config: Any) -> list[Any]:
    """The run's classes from ``DATA/classes.yaml`` (and ``VAL/classes.yaml``, which must agree)."""
    from seglab.data.panoptic import read_classes, same_classes

    return same_classes(config.data, config.val) if config.val is not None else read_classes(config.data)


def class_weights(pixels: np.ndarray) -> list[float]:
    """``(median share / share) ** 0.5`` per class, clipped to [0.2, 10]; absent classes 1."""
    share = pixels / max(pixels.sum(), 1)
    present = share > 0
    if not present.any():
        return [1.0] * len(pixels)
    ref = np.median(share[present])
    w = np.ones(len(pixels))
    w[present] = np.clip((ref / share[present]) ** 0.5, 0.2, 10.0)
    return [round(float(v), 4) for v in w]


def panoptic_kwargs(config: Any, train_samples: list[Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The module's extra arguments (class loss and classes); records the classes in ``meta``.

    Raises:
        DataError: a thing class without any instance in the training data (nothing to learn).
    """
    from seglab.data.panoptic import CLASSES_FILE, class_pixel_counts
    from seglab.instances.panoptic import MIN_STUFF_AREA
    from seglab.losses import create_loss

    classes = panoptic_classes(config)
    pixels = class_pixel_counts([s.label for s in train_samples], len(classes))
    for i, c in enumerate(classes):
        if c.thing and pixels[i] == 0:
            raise DataError(f"{config.data}/{CLASSES_FILE}", f"thing class {i} ({c.name!r}) has no instance in the "
                                                             "training images (seglab data check --task panoptic)")
    weights = class_weights(pixels)
    meta["panoptic"] = {"classes": [c.to_dict() for c in classes], "min_stuff_area": MIN_STUFF_AREA,
                        "class_weights": weights}
    loss = create_loss("ce+dice", mode="multiclass", ignore_index=255, weight=weights)
    return {"class_loss": loss, "classes": [c.to_dict() for c in classes]}


class PanopticModule(SegmentationModule):
    """:class:`SegmentationModule` with the class head's loss and panoptic validation.

    Args:
        class_loss: loss of the ``classes`` output against ``batch["classes"]`` (255 ignored).
        classes: ``[{name, thing, color}]`` as in ``classes.yaml``.
        **kwargs: :class:`SegmentationModule`'s.
    """

    def __init__(self, *, class_loss: torch.nn.Module, classes: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_loss = class_loss
        self.things = [i for i, c in enumerate(classes) if c["thing"]]
        self.stuffs = [i for i, c in enumerate(classes) if not c["thing"]]

    def aux_loss(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return CLASS_LOSS_WEIGHT * self.class_loss(out["classes"], batch["classes"])

    def decode_instances(self, probs: torch.Tensor) -> list[np.ndarray]:
        return super().decode_instances(probs[:, :3])

    def fuse(self, probs: torch.Tensor) -> list[Any]:
        """Panoptic results of a batch's decoder stacks (``N x (3 + K) x H x W``)."""
        from seglab.instances.panoptic import fuse_panoptic

        area = self.meta.get("panoptic", {}).get("min_stuff_area", 0)
        class_probs = probs[:, 3:].cpu().numpy()
        return [fuse_panoptic(inst, p, things=self.things, stuffs=self.stuffs, min_stuff_area=area)
                for inst, p in zip(self.decode_instances(probs), class_probs, strict=True)]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        from seglab.metrics.panoptic import nucleus_type_counts, panoptic_counts

        out = self(batch["image"])
        loss = float(self._loss(out, batch))
        scores = []
        gts, gcs = batch["instances"].cpu().numpy(), batch["classes"].cpu().numpy()
        for gi, gc, result in zip(gts, gcs, self.fuse(self.probabilities(out)), strict=True):
            pc, pi = result.classes.astype(np.int64), result.instances
            pan = panoptic_counts(gc, gi, pc, pi, things=self.things, stuffs=self.stuffs)
            types = nucleus_type_counts(gi, np.where(gc == 255, 0, gc), pi, np.where(pc == 255, 0, pc), classes=self.things)
            scores.append({**instance_record(gi, pi),
                           "panoptic": np.stack([pan[k] for k in ("tp", "fp", "fn", "iou_sum")]).astype(float),
                           "types": np.stack([types[k] for k in ("tp", "fp", "fn", "iou_sum")]).astype(float)})
        self._val_records += image_records(batch, scores, loss=loss)

    def on_validation_epoch_end(self) -> None:
        from seglab.metrics.panoptic import pq_from_counts, scores_from_counts

        records = once_per_image(self, self._val_records)
        if not records:
            return
        self.log("val/loss", sum(r["loss"] for r in records) / len(records), sync_dist=True)
        log_instance_scores(self, records)
        pan = sum(r["panoptic"] for r in records)
        classes = np.array(sorted(self.things + self.stuffs))
        scores = scores_from_counts(dict(zip(("tp", "fp", "fn", "iou_sum"), pan, strict=True), classes=classes), self.things)
        types = sum(r["types"] for r in records)
        self.log("val/panoptic_pq", scores["pq"], prog_bar=True, sync_dist=True)
        self.log("val/pq_things", scores["pq_things"], sync_dist=True)
        self.log("val/pq_stuff", scores["pq_stuff"], sync_dist=True)
        self.log("val/mpq_plus", float(pq_from_counts(*types).mean()), prog_bar=True, sync_dist=True)
