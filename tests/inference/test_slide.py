"""Slide readers (OpenSlide, tifffile, Pillow), µm/px from metadata, model_view's level choice and
resampling, and the one-line errors; every file is written by the test itself."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from PIL import Image

from seglab.data.synthetic_slide import render, write_synthetic_slide
from seglab.errors import DataError
from seglab.inference.slide import open_slide, read_thumbnail
from seglab.inference.slide_readers import OpenSlideReader, TiffReader
from seglab.inference.slide_view import SlideView, model_view, resample_region
from seglab.inference.source import ArraySource, open_image

H, W = 768, 1024


def expected(islands, level_shape, downsample, y0, x0, h, w):
    """What the synthetic slide holds at a region of a level (each level is rendered at its own pixel centres)."""
    ys, xs = (np.arange(y0, y0 + h) + 0.5) * downsample, (np.arange(x0, x0 + w) + 0.5) * downsample
    return render(islands, ys, xs, mpp=0.25)


@pytest.fixture(scope="module")
def svs(tmp_path_factory):
    path = tmp_path_factory.mktemp("svs") / "slide.svs"
    return path, write_synthetic_slide(path, H, W, mpp=0.25, levels=3, layout="svs", coverage=0.3)


@pytest.fixture(scope="module")
def ome(tmp_path_factory):
    path = tmp_path_factory.mktemp("ome") / "slide.ome.tif"
    return path, write_synthetic_slide(path, H, W, mpp=0.25, levels=3, layout="ome", coverage=0.3)


def gradient(h, w, c=3, dtype=np.uint8):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(yy * 7 + xx * 3 + 50 * k) % 256 for k in range(c)], -1).astype(dtype)


def test_aperio_svs_is_read_by_openslide_at_every_level(svs):
    path, islands = svs
    with open_slide(path) as slide:
        assert isinstance(slide._reader, OpenSlideReader) and slide.vendor == "aperio"
        assert slide.mpp == pytest.approx(0.25)
        assert slide.levels == [(768, 1024), (384, 512), (192, 256)]
        assert slide.downsamples == pytest.approx([1, 2, 4])
        assert (slide.channels, slide.dtype) == (3, np.uint8)
        for level, (y0, x0, h, w) in enumerate([(100, 300, 200, 300), (50, 60, 150, 200), (10, 20, 100, 150)]):
            region = slide.read_region(level, y0, x0, h, w)
            truth = expected(islands, slide.levels[level], slide.downsamples[level], y0, x0, h, w)
            assert region.shape == (h, w, 3) and region.dtype == np.uint8
            assert np.abs(region.astype(int) - truth).mean() < 5.0  # JPEG quality 90 of a noisy image
            decoded = tifffile.imread(path, level=level)[y0:y0 + h, x0:x0 + w]  # the same tiles, decoded by tifffile
            assert np.abs(region.astype(int) - decoded).max() <= 2


def test_pyramidal_ome_tiff_is_read_exactly_by_tifffile(ome):
    path, islands = ome
    with open_slide(path) as slide:
        assert isinstance(slide._reader, TiffReader)
        assert slide.mpp == pytest.approx(0.25)  # PhysicalSizeX
        assert slide.levels == [(768, 1024), (384, 512), (192, 256)]
        for level in range(3):
            ds = slide.downsamples[level]
            region = slide.read_region(level, 30, 70, 120, 90)
            np.testing.assert_array_equal(region, expected(islands, slide.levels[level], ds, 30, 70, 120, 90))


def test_regions_reaching_outside_are_white_and_missing_levels_refused(ome):
    with open_slide(ome[0]) as slide:
        region = slide.read_region(2, 180, 250, 20, 20)
        assert (region[12:, :] == 255).all() and (region[:, 6:] == 255).all()
        np.testing.assert_array_equal(region[:12, :6], slide.read_region(2, 180, 250, 12, 6))
        with pytest.raises(DataError, match="level 3 does not exist .*levels 0-2"):
            slide.read_region(3, 0, 0, 8, 8)


@pytest.mark.parametrize(("unit", "resolution", "mpp"), [("CENTIMETER", 20000.0, 0.5), ("INCH", 101600.0, 0.25)])
def test_plain_tiff_resolution_tags(tmp_path, unit, resolution, mpp):
    image = gradient(300, 400)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, image, resolution=(resolution, resolution), resolutionunit=unit, tile=(128, 128))
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(mpp)
        assert slide.levels == [(300, 400)]
        np.testing.assert_array_equal(slide.read_region(0, 17, 250, 200, 150), image[17:217, 250:400])


def test_ome_physical_size_unit_and_screen_dpi(tmp_path):
    image = gradient(64, 80, c=2, dtype=np.uint16)
    ome = tmp_path / "two.ome.tif"
    tifffile.imwrite(ome, np.moveaxis(image, -1, 0), metadata={"axes": "CYX", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm"})
    with open_slide(ome) as slide:
        assert (slide.mpp, slide.channels, slide.dtype) == (pytest.approx(0.5), 2, np.uint16)
        np.testing.assert_array_equal(slide.read_region(0, 5, 6, 30, 40), image[5:35, 6:46])
    screen = tmp_path / "screen.tif"
    tifffile.imwrite(screen, image[..., 0], resolution=(72, 72), resolutionunit="INCH")
    with open_slide(screen) as slide:
        assert slide.mpp is None  # 72 dpi is a screen's, not a microscope's
    with open_slide(screen, mpp=0.3) as slide:
        assert (slide.mpp, slide.file_mpp) == (0.3, None)


def test_png_single_level_with_dpi(tmp_path):
    image = gradient(50, 70)
    path = tmp_path / "tile.png"
    Image.fromarray(image).save(path, dpi=(50800, 50800))
    with open_slide(path) as slide:
        assert (slide.vendor, slide.levels, slide.mpp) == ("image", [(50, 70)], pytest.approx(0.5, rel=1e-3))
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 50, 70), image)


def test_model_view_picks_the_level_at_the_models_resolution(svs):
    with open_slide(svs[0]) as slide:
        view, scale, message = model_view(slide, 0.5)
        assert (view.level, view.factor, scale, message) == (1, 1.0, 2.0, None)
        assert isinstance(view, ArraySource) and view.shape == (384, 512, 3) and view.dtype == np.uint8
        np.testing.assert_array_equal(view.read_region(10, 60, 20, 90), slide.read_region(1, 10, 20, 50, 70))
        np.testing.assert_array_equal(view.read_rows(3, 9), view.read_region(3, 9, 0, 512))
        view, scale, message = model_view(slide, 0.26)  # within the 10 % tolerance of level 0
        assert (view.level, view.factor, scale, message) == (0, 1.0, 1.0, None)
        view, scale, _ = model_view(slide, 1.0)  # between levels: the finer one, resampled
        assert (view.level, view.factor, scale) == (2, 1.0, 4.0)
        view, scale, _ = model_view(slide, 0.75)
        assert (view.level, view.factor, scale, view.shape[:2]) == (1, pytest.approx(1.5), pytest.approx(3.0), (256, 341))


def test_model_view_resamples_a_single_level_like_pillow(tmp_path):
    image = gradient(256, 320)
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, image, resolution=(40000.0, 40000.0), resolutionunit="CENTIMETER")  # 0.25 µm/px
    with open_slide(path) as slide, model_view(slide, 0.5)[0] as view:
        assert (view.level, view.factor, view.scale, view.shape) == (0, 2.0, 2.0, (128, 160, 3))
        whole = view.read_all()
        reference = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F").resize((160, 128), Image.BILINEAR))
                              for c in range(3)], -1)
        assert np.abs(whole.astype(float) - reference).max() <= 0.5 + 1e-3  # rounding to uint8 only
        np.testing.assert_array_equal(view.read_region(37, 101, 55, 160), whole[37:101, 55:160])  # no seams


@pytest.mark.parametrize("factor", [2.0, 3.0, 1.7, 0.5])
def test_resampling_equals_pillow_bilinear_and_regions_agree(factor):
    rng = np.random.default_rng(0)
    out_h, out_w = 70, 50
    image = rng.random((round(out_h * factor), round(out_w * factor))).astype(np.float32)
    reference = np.asarray(Image.fromarray(image, "F").resize((out_w, out_h), Image.BILINEAR))
    read = lambda y, x, h, w: image[y:y + h, x:x + w, None]  # noqa: E731
    whole = resample_region(read, image.shape, factor, 0, out_h, 0, out_w, np.dtype(np.float32))[..., 0]
    np.testing.assert_allclose(whole, reference, atol=1e-5)
    part = resample_region(read, image.shape, factor, 13, 61, 7, 50, np.dtype(np.float32))[..., 0]
    np.testing.assert_allclose(part, whole[13:61, 7:50], atol=1e-6)


def test_model_view_warns_when_the_resolution_cannot_be_matched(tmp_path, svs):
    path = tmp_path / "nompp.tif"
    tifffile.imwrite(path, gradient(64, 64))
    with open_slide(path) as slide:
        view, scale, message = model_view(slide, 0.5)
        assert (view.level, view.factor, scale) == (0, 1.0, 1.0)
        assert "µm/px unknown: the slide's (give --mpp)" in message and "\n" not in message
    with open_slide(svs[0]) as slide:
        assert "the model's" in model_view(slide, None)[2]
    with open_slide(svs[0], mpp=0.5) as slide:
        view, scale, message = model_view(slide, 0.25)
        assert (view.level, view.factor, scale, view.shape[:2]) == (0, 0.5, 0.5, (1536, 2048))
        assert "coarser" in message and "upsampled 2.00x" in message


def test_array_and_lazy_tiff_sources_read_regions(tmp_path):
    image = gradient(90, 120)
    np.testing.assert_array_equal(ArraySource(image).read_region(10, 50, 30, 100), image[10:50, 30:100])
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib")
    with open_image(path) as source:
        np.testing.assert_array_equal(source.read_region(10, 50, 30, 100), image[10:50, 30:100])


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(("layout", "keep"), [("svs", 0.5), ("svs", 0.999), ("ome", 0.5), ("ome", 0.999)])
def test_truncated_slides_fail_in_one_line(tmp_path, svs, ome, layout, keep):
    source = (svs if layout == "svs" else ome)[0]
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError) as excinfo, open_slide(path) as slide:
        for level in range(len(slide.levels)):
            slide.read_region(level, 0, 0, *slide.levels[level])
    text = one_line(excinfo)
    assert text.startswith(str(path)) and ("truncated" in text or "damaged" in text)


def test_unsupported_missing_and_empty_files(tmp_path):
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    with pytest.raises(DataError, match="unsupported format") as excinfo:
        open_slide(text)
    assert one_line(excinfo).startswith(str(text))
    empty = tmp_path / "empty.ndpi"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        open_slide(empty)
    with pytest.raises(DataError, match="file not found"):
        open_slide(tmp_path / "missing.mrxs")
    with pytest.raises(DataError, match="holds no .dcm"):
        open_slide(tmp_path / "nothing" if (tmp_path / "nothing").mkdir() is None else None)
    with pytest.raises(DataError, match="must be a finite number"):
        open_slide(text, mpp=0.0)


def test_a_stack_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 32, 32), np.uint8), metadata={"axes": "ZYX"})
    with pytest.raises(DataError, match="2-D image with channels expected"):
        open_slide(path)


def constant_tiles(n: int, tile: int):
    block = np.full((tile, tile, 3), 200, np.uint8)
    for _ in range(n):
        yield block


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_region_of_a_large_tiled_tiff_decodes_only_its_tiles(tmp_path):
    side, tile = 4096, 256
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, constant_tiles((side // tile) ** 2, tile), shape=(side, side, 3), dtype=np.uint8,
                     tile=(tile, tile), photometric="rgb", compression="zlib", compressionargs={"level": 1})
    level_bytes = side * side * 3
    with open_slide(path) as slide:
        peak = peak_bytes(lambda: slide.read_region(0, 1000, 2000, 300, 300))
        assert peak < level_bytes / 20  # 48 MB level; the region touches 4 x 4 tiles of 192 kB
        thumb_peak = peak_bytes(lambda: read_thumbnail(slide, 512))
        assert thumb_peak < level_bytes / 2


@pytest.mark.slow
def test_a_20k_slide_is_read_by_region_and_thumbnail_in_bounded_memory(tmp_path):
    side, tile = 20480, 1024
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, constant_tiles((side // tile) ** 2, tile), shape=(side, side, 3), dtype=np.uint8,
                     tile=(tile, tile), photometric="rgb", compression="zlib", compressionargs={"level": 1})
    with open_slide(path) as slide, model_view(slide, None)[0] as view:
        assert peak_bytes(lambda: view.read_region(9000, 9512, 15000, 15512)) < 32 * 2**20
        assert peak_bytes(lambda: read_thumbnail(slide)) < 256 * 2**20  # the level is 1.2 GB
        assert isinstance(view, SlideView)
