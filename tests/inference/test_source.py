"""Lazy image sources read the same rows as a full read, for every TIFF layout."""

import numpy as np
import pytest
import tifffile

from seglab.data.io import read_image, write_image
from seglab.errors import DataError
from seglab.inference.source import LazyTiffSource, open_image


@pytest.fixture
def rgb():
    return (np.random.default_rng(0).random((300, 200, 3)) * 65535).astype(np.uint16)


@pytest.mark.parametrize(
    "layout",
    [{}, {"tile": (64, 64), "compression": "zlib"}, {"compression": "zlib", "rowsperstrip": 16}],
    ids=["contiguous", "tiled", "compressed-strips"],
)
def test_tiff_rows_equal_full_read(tmp_path, rgb, layout):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", **layout)
    with open_image(path) as source:
        assert source.shape == (300, 200, 3) and source.dtype == np.uint16
        assert np.array_equal(source.read_rows(37, 150), rgb[37:150])
        assert np.array_equal(source.read_all(), read_image(path))
        if not layout:
            assert isinstance(source, LazyTiffSource)  # memory-mapped, not read
    source.close()  # closing twice is harmless


def test_channel_first_and_gray_tiff(tmp_path, rgb):
    tifffile.imwrite(tmp_path / "cf.tif", np.moveaxis(rgb, -1, 0), photometric="minisblack")
    assert np.array_equal(open_image(tmp_path / "cf.tif").read_rows(5, 9), rgb[5:9])
    tifffile.imwrite(tmp_path / "g.tif", rgb[..., 0])
    assert np.array_equal(open_image(tmp_path / "g.tif").read_rows(0, 3), rgb[:3, :, :1])


def test_png_and_bad_files(tmp_path, rgb):
    img8 = (rgb >> 8).astype(np.uint8)
    write_image(tmp_path / "a.png", img8)
    assert np.array_equal(open_image(tmp_path / "a.png").read_rows(10, 20), img8[10:20])
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    for path in (tmp_path / "bad.tif", tmp_path / "missing.png"):
        with pytest.raises(DataError, match=str(path)):
            open_image(path)
