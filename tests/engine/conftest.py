"""Tiny synthetic data sets and configs shared by the engine tests."""

from pathlib import Path

import pytest

_TINY = {
    "model": "unet",
    "model_kwargs": {"depth": 2, "base_channels": 4},
    "batch_size": 2,
    "patch": 32,
    "patches_per_image": 2,
    "workers": 0,
    "overlays": 1,
}


@pytest.fixture
def tiny() -> dict:
    """Config values for a model and loader small enough to train in a second."""
    return dict(_TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Five 48 x 48 H&E-like tiles in the folder format."""
    from seglab.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny") / "data"
    write_synthetic_dataset(root, n=5, size=48, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_semantic(tmp_path_factory) -> Path:
    """Four tiles whose labels are class maps: 0 background, 1 small nuclei, 2 large nuclei."""
    import numpy as np

    from seglab.data.io import read_label, write_label
    from seglab.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_sem") / "data"
    write_synthetic_dataset(root, n=4, size=48, seed=5)
    for path in sorted((root / "labels").iterdir()):
        inst = read_label(path)
        areas = np.bincount(inst.ravel())
        classes = np.where(inst > 0, np.where(areas[inst] > np.median(areas[1:]), 2, 1), 0)
        write_label(path, classes.astype(np.uint8))
    return root
