"""The LightningDataModule: folder data set -> train/val split -> patch loaders.

Images are read lazily by :class:`seglab.data.SegmentationDataset`; this module only decides which
files go where and builds loaders; normalisation and the class count come from the data set's
fingerprint (:mod:`seglab.data.fingerprint`).
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from seglab.data.dataset import Sample, SegmentationDataset, find_samples
from seglab.data.normalize import IntensityScaling
from seglab.data.transforms import build_transforms
from seglab.engine.recipes import Recipe


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
    ) -> None:
        super().__init__()
        self.train_samples, self.val_samples = train, val
        self.recipe = recipe
        self.patch, self.patches_per_image, self.batch_size = patch, patches_per_image, batch_size
        self.augment, self.channels, self.workers, self.seed = augment, channels, workers, seed
        self.intensity, self.modality = intensity, modality

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
        )

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        per_rank = math.ceil(len(self.train_samples) * self.patches_per_image / world)
        return DataLoader(
            self._dataset(self.train_samples, train=True),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=per_rank > self.batch_size,  # a ragged last batch only when it is the only one
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
