"""Targets checked against skimage and slow per-instance loops written here."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

from seglab.data.synthetic import synth_tile
from seglab.data.targets import (
    distance_targets,
    foreground,
    relabel_sequential,
    three_class_targets,
)


def _random_instances(seed: int, size: int = 48) -> np.ndarray:
    """Touching blobs with non-contiguous ids (a Voronoi split of random discs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inst = np.zeros((size, size), np.int64)
    best = np.full((size, size), np.inf)
    for k in range(12):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(3, 9)
        d = np.hypot(yy - cy, xx - cx) / r
        take = (d < 1) & (d < best)
        inst[take] = 7 * k + 3
        best[take] = d[take]
    return inst


def _maps():
    yield from (_random_instances(s) for s in range(4))
    yield synth_tile(96, seed=3)[1].astype(np.int64)
    yield np.zeros((10, 12), np.int64)
    full = np.ones((9, 9), np.int64)
    full[:, 5:] = 4
    yield full


def _slow_three_class(inst, width):
    out = np.zeros(inst.shape, np.int64)
    cross = ndimage.generate_binary_structure(2, 1)
    for i in np.unique(inst[inst > 0]):
        m = inst == i
        inner = ndimage.binary_erosion(m, cross, iterations=width, border_value=1)
        out[m] = 2
        out[inner] = 1
    return out


@pytest.mark.parametrize("inst", list(_maps()))
@pytest.mark.parametrize("width", [1, 2, 3])
def test_three_class_matches_per_instance_erosion(inst, width):
    np.testing.assert_array_equal(three_class_targets(inst, width), _slow_three_class(inst, width))


@pytest.mark.parametrize("inst", list(_maps()))
def test_three_class_width1_is_skimage_inner_boundary(inst):
    ref = np.where(inst > 0, 1, 0) + (find_boundaries(inst, mode="inner") & (inst > 0))
    np.testing.assert_array_equal(three_class_targets(inst), ref)


def test_three_class_torch_and_batched():
    inst = _random_instances(5)
    batch = torch.from_numpy(np.stack([inst, inst[::-1].copy()]))
    out = three_class_targets(batch, 2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
    np.testing.assert_array_equal(out[0].numpy(), three_class_targets(inst, 2))
    np.testing.assert_array_equal(out[1].numpy(), three_class_targets(inst[::-1].copy(), 2))


@pytest.mark.parametrize("inst", list(_maps()))
def test_distance_matches_per_instance_edt(inst):
    ref = np.zeros(inst.shape)
    for i in np.unique(inst[inst > 0]):
        m = inst == i
        d = ndimage.distance_transform_edt(m)  # scipy: beyond the image border is not a zero
        ref[m] = d[m] / d[m].max()
    out = distance_targets(inst)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6)
    t = distance_targets(torch.from_numpy(inst))
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-6)


def test_foreground_and_ignore():
    sem = np.array([[0, 2, 255], [1, 0, 3]])
    np.testing.assert_array_equal(foreground(sem), [[0, 1, 1], [1, 0, 1]])
    np.testing.assert_array_equal(foreground(sem, ignore_index=255), [[0, 1, 255], [1, 0, 1]])
    t = foreground(torch.tensor(sem), ignore_index=255)
    assert t.dtype == torch.int64 and t.tolist() == [[0, 1, 255], [1, 0, 1]]


@pytest.mark.parametrize("inst", list(_maps()))
def test_relabel_sequential_matches_skimage(inst):
    from skimage.segmentation import relabel_sequential as sk_relabel

    ref = sk_relabel(inst)[0]
    np.testing.assert_array_equal(relabel_sequential(inst), ref)
    np.testing.assert_array_equal(relabel_sequential(torch.from_numpy(inst)).numpy(), ref)


def test_relabel_without_background():
    np.testing.assert_array_equal(relabel_sequential(np.array([[5, 9], [9, 5]])), [[1, 2], [2, 1]])
