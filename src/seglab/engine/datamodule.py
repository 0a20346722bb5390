"""The LightningDataModule: folder data set -> train/val split -> patch loaders.

Images are read lazily by :class:`seglab.data.SegmentationDataset`; this module only decides which
files go where and builds loaders; normalisation and the class count come from the data set's
fingerprint (:mod:`seglab.data.fingerprint`).
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, DistributedSampler

from seglab.data.dataset import SegmentationDataset, find_samples
from seglab.data.io import Sample
from seglab.data.normalize import IntensityScaling
from seglab.data.transforms import build_transforms
from seglab.spec.recipes import Recipe


def split_samples(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out ``fraction`` of the samples (at least one) for validation, reproducibly.

    With a single sample both sides get it (patches are sampled for training, the whole image is
    scored for validation); a warning says so.
    """
    if len(samples) == 1:
        print("seglab: warning: one image only; validating on the training image", file=sys.stderr)
        return list(samples), list(samples)
    order = sorted(samples, key=lambda s: s.stem)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(fraction * len(order))))
    return order[n_val:], order[:n_val]


class EpochSampler(DistributedSampler):
    """This rank's share of a shuffled epoch, as ``(index, epoch)`` pairs.

    The order depends on ``seed`` and the epoch only, and
    :class:`~seglab.data.dataset.SegmentationDataset` draws the patch and augmentation of an
    ``(index, epoch)`` item from those numbers alone: an epoch's data stream is the same whether
    the run started at epoch 0 or resumed from a checkpoint, and whatever the number of workers.
    Under DDP it splits the epoch as Lightning's own ``DistributedSampler`` would (Lightning leaves
    a ``DistributedSampler`` in place); on one process it is a seeded shuffle.

    Args:
        next_epoch: called at the start of every pass for the epoch's number (Lightning's
            ``set_epoch`` is overridden by it: after a resume, Lightning 2.6 passes one more than
            the epoch it trains).
        **kwargs: ``DistributedSampler``'s (``num_replicas``, ``rank``, ``seed``, ...).
    """

    def __init__(self, dataset: SegmentationDataset, *, next_epoch: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.next_epoch = next_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.set_epoch(self.next_epoch())
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())


class SegmentationDataModule(L.LightningDataModule):
    """Train on random patches, validate on whole images (batch size 1: sizes may differ)."""

    def __init__(
        self,
        *,
        train: list[Sample],
        val: list[Sample],
        recipe: Recipe,
        patch: int,
        patches_per_image: int,
        batch_size: int,
        augment: str,
        channels: int,
        workers: int,
        seed: int,
        intensity: IntensityScaling | None = None,
        modality: str = "brightfield",
        foreground_sampling: float = 0.0,
    ) -> None:
        super().__init__()
        self.train_samples, self.val_samples = train, val
        self.recipe = recipe
        self.patch, self.patches_per_image, self.batch_size = patch, patches_per_image, batch_size
        self.augment, self.channels, self.workers, self.seed = augment, channels, workers, seed
        self.intensity, self.modality = intensity, modality
        self.foreground_sampling = foreground_sampling  # training patches only
        self._passes = 0  # training passes drawn without a trainer
        self._steps_per_epoch = 1

    def _next_train_epoch(self) -> int:
        """The epoch a training pass draws: optimizer steps done // steps per epoch.

        The step count is restored from a checkpoint before Lightning starts a pass, whereas its
        epoch counters are not final yet when DataLoader workers start one (they fetch ahead), and
        an iterator may be made and dropped on resume: counting passes would skip an epoch.
        Without a trainer, passes are counted.
        """
        if self.trainer is None:
            self._passes += 1
            return self._passes - 1
        return self.trainer.global_step // self._steps_per_epoch

    def _dataset(self, samples: list[Sample], *, train: bool) -> SegmentationDataset:
        return SegmentationDataset(
            samples,
            task=self.recipe.task,
            targets=self.recipe.targets,
            patch_size=self.patch if train else None,
            patches_per_image=self.patches_per_image if train else 1,
            transform=build_transforms(self.augment if train else "none", channels=self.channels, modality=self.modality),
            intensity=self.intensity,
            seed=self.seed,
            foreground_sampling=self.foreground_sampling if train else 0.0,
        )

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        per_rank = math.ceil(len(self.train_samples) * self.patches_per_image / world)
        dataset = self._dataset(self.train_samples, train=True)
        drop_last = per_rank > self.batch_size  # a ragged last batch only when it is the only one
        self._steps_per_epoch = max(1, per_rank // self.batch_size if drop_last else 1)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSampler(
                dataset, next_epoch=self._next_train_epoch, num_replicas=world, rank=rank, seed=self.seed
            ),
            drop_last=drop_last,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=False,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self._dataset(self.val_samples, train=False),
            batch_size=1,
            shuffle=False,
            num_workers=min(self.workers, 1),
            persistent_workers=self.workers > 0,
        )


def load_samples(folder: str | Path) -> list[Sample]:
    """All labelled samples of a folder data set (errors name the folder or file)."""
    return find_samples(Path(folder), require_labels=True)
