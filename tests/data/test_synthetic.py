"""Synthetic nuclei: determinism, valid instances (checked per id with scipy), files written."""

import numpy as np
import pytest
from scipy import ndimage

from seglab.data.io import read_image, read_label
from seglab.data.synthetic import synth_tile, tile_seed, write_synthetic_dataset
from seglab.errors import SeglabError


@pytest.mark.parametrize("style,channels", [("he", 3), ("fluo", 1)])
def test_tile_shapes_and_determinism(style, channels):
    image, inst = synth_tile(96, seed=7, style=style)
    assert image.shape == (96, 96, channels) and image.dtype == np.uint8
    assert inst.shape == (96, 96) and inst.dtype == np.int32
    image2, inst2 = synth_tile(96, seed=7, style=style)
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(inst, inst2)
    assert not np.array_equal(synth_tile(96, seed=8, style=style)[1], inst)


@pytest.mark.parametrize("seed", range(4))
def test_every_id_is_one_connected_region(seed):
    _, inst = synth_tile(128, seed=seed)
    ids = np.unique(inst[inst > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    for i in ids:
        _, n = ndimage.label(inst == i)  # 4-connectivity
        assert n == 1, f"id {i} has {n} pieces"


def test_nuclei_touch_but_do_not_swallow_each_other():
    touching, total, areas = 0, 0, []
    for seed in range(3):
        _, inst = synth_tile(256, seed=seed)
        for i in range(1, inst.max() + 1):
            m = inst == i
            ring = ndimage.binary_dilation(m) & ~m
            touching += bool(np.any(inst[ring] > 0))
            areas.append(m.sum())
        total += inst.max()
    assert 0.25 < touching / total < 0.9  # clusters are common, isolated nuclei too
    radius = np.sqrt(np.median(areas) / np.pi)
    assert 4 <= radius <= 14


def test_he_nuclei_darker_and_bluer_than_background():
    image, inst = synth_tile(128, seed=1)
    fg, bg = image[inst > 0].astype(float), image[inst == 0].astype(float)
    assert fg.mean() < bg.mean() - 30
    assert (fg[:, 2] - fg[:, 0]).mean() > (bg[:, 2] - bg[:, 0]).mean()


def test_write_dataset_round_trip(tmp_path):
    stems = write_synthetic_dataset(tmp_path, n=3, size=64, seed=5, style="fluo")
    assert stems == ["synth_0000", "synth_0001", "synth_0002"]
    for i, stem in enumerate(stems):
        image, inst = synth_tile(64, seed=tile_seed(5, i), style="fluo")
        np.testing.assert_array_equal(read_image(tmp_path / "images" / f"{stem}.png"), image)
        np.testing.assert_array_equal(read_label(tmp_path / "labels" / f"{stem}.tif"), inst)
    assert not list(tmp_path.rglob(".*tmp*"))


def test_bad_style_and_size():
    with pytest.raises(SeglabError, match="he, fluo|fluo, he"):
        synth_tile(64, seed=0, style="ihc")
    with pytest.raises(SeglabError):
        synth_tile(4, seed=0)


@pytest.mark.parametrize("style", ["he", "fluo"])
def test_tiles_too_small_for_nuclei_are_empty_not_an_error(style):
    for seed in range(12):
        image, inst = synth_tile(24, seed=seed, style=style)
        assert image.shape[:2] == (24, 24) and inst.shape == (24, 24)
        assert inst.max() == len(np.unique(inst)) - 1  # ids 1..K, possibly none
