"""Tissue detection: Otsu (checked against scikit-image), islands found on synthetic slides of each
kind, covers(), areas, mask files and the no-tissue error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from PIL import Image

from seglab.data.synthetic_slide import island_mask, make_islands, write_synthetic_slide
from seglab.errors import DataError
from seglab.inference.slide import open_slide
from seglab.inference.tissue import (
    NoTissueError,
    TissueMask,
    detect_tissue,
    otsu_threshold,
    read_mask,
)

H, W = 1536, 2048


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module", params=["svs", "ome"])
def slide_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("tissue") / ("slide.svs" if request.param == "svs" else "slide.ome.tif")
    return path, write_synthetic_slide(path, H, W, mpp=0.25, levels=3, layout=request.param, coverage=0.15, seed=3)


def test_otsu_matches_scikit_image():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.1, 0.03, 5000), rng.normal(0.45, 0.08, 2000)])
    bin_width = (values.max() - values.min()) / 256
    assert otsu_threshold(values) == pytest.approx(threshold_otsu(values, nbins=256), abs=bin_width)


def test_islands_are_found_on_synthetic_slides(slide_file):
    path, islands = slide_file
    with open_slide(path) as slide:
        tissue = detect_tissue(slide)
    assert max(tissue.mask.shape) <= 2048 and tissue.downsample >= 1
    truth = island_mask(islands, (H, W), tissue.downsample)
    assert truth.shape == tissue.mask.shape
    assert iou(tissue.mask, truth) > 0.9
    assert "saturation" in tissue.method
    true_area = sum(math.pi * ry * rx for ry, rx in islands.radii) * 0.25**2 / 1e6
    assert tissue.area_mm2(0.25) == pytest.approx(true_area, rel=0.15)
    assert tissue.area_mm2(None) is None
    assert 0.1 < tissue.fraction < 0.25


def test_covers_answers_in_level0_coordinates(slide_file):
    path, islands = slide_file
    with open_slide(path) as slide:
        tissue = detect_tissue(slide)
    (cy, cx), ry = islands.centres[0], islands.radii[0][0]
    assert tissue.covers(cy - 10, cy + 10, cx - 10, cx + 10)
    assert tissue.covers(cy - ry - 200, cy - ry + 20, cx - 5, cx + 5)  # straddles the island's top edge
    far = np.ones((H, W), bool)
    for (y, x), (a, b) in zip(islands.centres, islands.radii, strict=True):
        far[max(0, int(y - a - 64)):int(y + a + 64), max(0, int(x - b - 64)):int(x + b + 64)] = False
    ys, xs = np.nonzero(far[::64, ::64])
    assert ys.size, "the slide has glass far from every island"
    y, x = ys[0] * 64, xs[0] * 64
    assert not tissue.covers(y, y + 32, x, x + 32)
    assert not tissue.covers(H + 10, H + 50, 0, 50)  # outside the slide


def test_gray_fluorescence_and_gray_brightfield(tmp_path):
    islands = make_islands(H, W, coverage=0.2, count=4, seed=1)
    truth = island_mask(islands, (H, W), 1.0)
    rng = np.random.default_rng(0)
    fluo = np.where(truth, 3000, 200).astype(np.uint16) + rng.integers(0, 100, truth.shape, dtype=np.uint16)
    gray = np.where(truth, 120, 235).astype(np.uint8) + rng.integers(0, 10, truth.shape, dtype=np.uint8)
    for name, image in (("fluo.tif", fluo), ("gray.tif", gray)):
        tifffile.imwrite(tmp_path / name, image, tile=(256, 256))
        with open_slide(tmp_path / name) as slide:
            tissue = detect_tissue(slide)
        assert "intensity" in tissue.method
        assert iou(tissue.mask, island_mask(islands, (H, W), tissue.downsample)) > 0.9


def test_an_image_that_is_all_tissue_keeps_everything(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(1000, 1200, (2, 256, 300), dtype=np.uint16)  # two channels first, no background
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image)
    with open_slide(path) as slide:
        assert detect_tissue(slide).mask.all()


def test_a_slide_without_tissue_is_one_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    glass = (np.array([243, 241, 244]) + rng.integers(-3, 4, (600, 800, 3))).astype(np.uint8)
    path = tmp_path / "glass.tif"
    tifffile.imwrite(path, glass, photometric="rgb")
    with open_slide(path) as slide:
        with pytest.raises(NoTissueError, match="no tissue found .*--tissue none") as excinfo:
            detect_tissue(slide)
        assert str(excinfo.value).startswith(str(path)) and "\n" not in str(excinfo.value)
        assert detect_tissue(slide, raise_empty=False).empty


def test_none_and_mask_files(tmp_path, slide_file):
    path, _ = slide_file
    with open_slide(path) as slide:
        everything = detect_tissue(slide, "none")
        assert everything.mask.all() and everything.fraction == 1.0 and everything.covers(0, 1, 0, 1)
        assert everything.mask.shape[1] / everything.mask.shape[0] == pytest.approx(W / H, rel=0.01)
        tissue = detect_tissue(slide)
        saved = tmp_path / "slide_tissue.png"
        tissue.save_png(saved)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["slide_tissue.png"]  # no temporary left
        again = detect_tissue(slide, saved)
        np.testing.assert_array_equal(again.mask, tissue.mask)
        Image.fromarray(np.full((97, 128), 255, np.uint8)).save(tmp_path / "rounded.png")  # 96 x 128 is exact
        assert detect_tissue(slide, tmp_path / "rounded.png").mask.all()
        Image.fromarray(np.full((128, 128), 255, np.uint8)).save(tmp_path / "square.png")
        with pytest.raises(DataError, match="not a downscaled copy of the 2048 x 1536 px slide") as excinfo:
            detect_tissue(slide, tmp_path / "square.png")
        assert str(excinfo.value).startswith(str(tmp_path / "square.png")) and "\n" not in str(excinfo.value)
        with pytest.raises(DataError, match="file not found"):
            detect_tissue(slide, tmp_path / "missing.png")


def test_read_mask_scales_covers_to_the_slide():
    mask = np.zeros((10, 20), bool)
    mask[2:4, 5:8] = True
    tissue = TissueMask(mask, (100, 200))
    assert tissue.downsample == 10.0
    assert tissue.covers(20, 40, 50, 80) and tissue.covers(39, 41, 79, 81)
    assert not tissue.covers(0, 20, 0, 200) and not tissue.covers(40, 100, 0, 200)
    assert tissue.area_mm2(0.5) == pytest.approx(6 * 100 * 0.25 / 1e6)
    with pytest.raises(DataError):
        read_mask("/nonexistent/mask.png", (100, 200))
