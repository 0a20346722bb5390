"""The generalization benchmark's data sets (benchmarks/generalization_data.py) are what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from seglab.data.io import read_image, read_label

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "generalization_data.py"
_spec = importlib.util.spec_from_file_location("generalization_data", _PATH)
gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gd)

# name -> (dtype, channels, equivalent diameter range, touching share range)
EXPECTED = {
    "fluo16": (np.uint16, 1, (12, 22), (0.2, 0.65)),
    "gray_small": (np.uint8, 1, (6, 9), (0.3, 0.75)),
    "he_large": (np.uint8, 3, (30, 45), (0.1, 0.6)),
    "dense_clusters": (np.uint8, 3, (14, 20), (0.5, 1.0)),
    "sparse_cells": (np.uint8, 2, (50, 80), (0.0, 0.5)),
}


def touching_ids(label: np.ndarray) -> set[int]:
    ids: set[int] = set()
    for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        ids |= set(a[m].tolist()) | set(b[m].tolist())
    return ids


def inner_diameters(label: np.ndarray) -> np.ndarray:
    """Equivalent diameters (from pixel counts) of the objects not cut by the image border."""
    border = np.unique(np.r_[label[0], label[-1], label[:, 0], label[:, -1]])
    ids, counts = np.unique(label, return_counts=True)
    keep = ~np.isin(ids, border)
    return 2 * np.sqrt(counts[keep] / np.pi)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generalization")
    return {name: gd.make_set(name, root / name, seed=3, small=True) for name in gd.SETS}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_set(sets, name):
    dtype, channels, (dmin, dmax), (tmin, tmax) = EXPECTED[name]
    diameters, touching, objects = [], 0, 0
    for split in ("train", "val", "test"):
        images = sorted((sets[name] / split / "images").iterdir())
        assert images
        for path in images:
            image, label = read_image(path), read_label(sets[name] / split / "labels" / f"{path.stem}.tif")
            assert image.dtype == dtype and image.shape == (*label.shape, channels)
            ids = np.unique(label)[1:]
            assert len(ids) > 0
            # one id per object: every id is one 4-connected piece
            pieces = ndi.label(label > 0)[0]
            for i, sl in enumerate(ndi.find_objects(label), 1):
                if sl is not None:
                    assert ndi.label(label[sl] == i)[1] == 1
            assert pieces.max() <= len(ids)
            touching += len(touching_ids(label))
            objects += len(ids)
            diameters.append(inner_diameters(label))
            fg = label > 0
            if name == "fluo16":
                assert int(image.max()) - int(image.min()) < 2000
                assert 80 < np.median(image[~fg]) < 130 and image[fg].mean() > image[~fg].mean() + 50
            elif name in ("gray_small", "he_large", "dense_clusters"):  # dark nuclei, bright background
                assert image[fg].mean() < image[~fg].mean() - 20
            else:  # nucleus channel bright inside cells only; cytoplasm channel covers the cells
                assert image[..., 1][fg].mean() > image[..., 1][~fg].mean() + 10
                assert image[..., 0][fg].mean() > image[..., 0][~fg].mean() + 20
    d = np.concatenate(diameters)
    assert dmin <= np.median(d) <= dmax
    assert np.mean((d >= dmin - 1) & (d <= dmax + 1)) > 0.85
    assert tmin <= touching / objects <= tmax


def test_deterministic_per_seed():
    a_image, a_label = gd.make_image("gray_small", 5, 0, 0)
    b_image, b_label = gd.make_image("gray_small", 5, 0, 0)
    c_image, _ = gd.make_image("gray_small", 6, 0, 0)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_label, b_label)
    assert not np.array_equal(a_image, c_image)


def test_unknown_set(tmp_path):
    with pytest.raises(ValueError, match="unknown set"):
        gd.make_set("nope", tmp_path)
