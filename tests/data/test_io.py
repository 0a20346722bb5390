"""Image readers: large PNGs are read like large TIFFs (Pillow's bomb guard raised, then restored)."""

import numpy as np
import pytest
from PIL import Image

import seglab.cli
import seglab.data.io as io
from seglab.data.io import read_image, read_label, write_image, write_label
from seglab.errors import DataError


def test_png_over_pillows_bomb_limit_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 64 x 64 PNG is then "a bomb" (> 2 x 1000)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "images" / "big.png", image)
    label = np.zeros((64, 64), np.uint8)
    label[10:20, 10:20] = 1
    write_label(tmp_path / "labels" / "big.png", label)
    assert np.array_equal(read_image(tmp_path / "images" / "big.png"), image)
    assert np.array_equal(read_label(tmp_path / "labels" / "big.png"), label)
    assert Image.MAX_IMAGE_PIXELS == 1000  # the process-wide guard is left as it was
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"data": "seglab.cli.data"})
    assert seglab.cli.main(["data", "check", str(tmp_path)]) == 0
    assert "problems: 0" in capsys.readouterr().out


def test_png_over_our_own_limit_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(io, "PIL_MAX_PIXELS", 1500)
    write_image(tmp_path / "big.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match="big.png: unreadable image .*DecompressionBombError"):
        read_image(tmp_path / "big.png")
    assert Image.MAX_IMAGE_PIXELS == 1000
