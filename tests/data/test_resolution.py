"""µm/px from image metadata (OME, Aperio, ImageJ, TIFF resolution tags, PNG dpi) and the
fingerprint's median over the images that state it."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from seglab.data.dataset import find_samples
from seglab.data.fingerprint import compute_fingerprint
from seglab.data.io import write_label
from seglab.data.resolution import image_mpp, mpp_from_description, mpp_from_ome

IMAGE = np.full((32, 40, 3), 200, np.uint8)


def test_ome_physical_size_with_units():
    ome = '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels PhysicalSizeX="{}" {}/></Image></OME>'
    assert mpp_from_ome(ome.format(0.25, "")) == 0.25  # µm by default
    assert mpp_from_ome(ome.format(250, 'PhysicalSizeXUnit="nm"')) == pytest.approx(0.25)
    assert mpp_from_ome(ome.format(0.0005, 'PhysicalSizeXUnit="mm"')) == pytest.approx(0.5)
    assert mpp_from_ome(ome.format(1, 'PhysicalSizeXUnit="parsec"')) is None
    assert mpp_from_ome("<not xml") is None


def test_aperio_description():
    desc = "Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990|Date = 12/29/09"
    assert mpp_from_description(desc) == pytest.approx(0.499)
    assert mpp_from_description("Aperio Image Library v10|AppMag = 20") is None


@pytest.mark.parametrize(("kwargs", "mpp"), [
    ({"resolution": (40000.0, 40000.0), "resolutionunit": "CENTIMETER"}, 0.25),
    ({"resolution": (50800.0, 50800.0), "resolutionunit": "INCH"}, 0.5),
    ({"resolution": (2.0, 2.0), "imagej": True, "metadata": {"unit": "micron"}}, 0.5),
    ({"resolution": (96.0, 96.0), "resolutionunit": "INCH"}, None),  # a screen's dpi
    ({}, None),
])
def test_tiff_tags(tmp_path, kwargs, mpp):
    path = tmp_path / "image.tif"
    data = IMAGE[..., 0] if kwargs.get("imagej") else IMAGE
    tifffile.imwrite(path, data, **kwargs)
    assert image_mpp(path) == (None if mpp is None else pytest.approx(mpp))


def test_png_dpi_and_unreadable_files(tmp_path):
    Image.fromarray(IMAGE).save(tmp_path / "a.png", dpi=(25400, 25400))
    assert image_mpp(tmp_path / "a.png") == pytest.approx(1.0, rel=1e-3)
    Image.fromarray(IMAGE).save(tmp_path / "b.png")
    assert image_mpp(tmp_path / "b.png") is None
    (tmp_path / "c.tif").write_bytes(b"damaged")
    assert image_mpp(tmp_path / "c.tif") is None  # reading the pixels names the problem


def folder(root, mpps):
    label = np.zeros((32, 40), np.int32)
    label[5:15, 5:15] = 1
    for i, mpp in enumerate(mpps):
        kwargs = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
        (root / "images").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"im{i}.tif", IMAGE, **kwargs)
        write_label(root / "labels" / f"im{i}.tif", label)
    return compute_fingerprint(find_samples(root, require_labels=True))


def test_fingerprint_records_the_median_and_whether_images_disagree(tmp_path):
    fp = folder(tmp_path / "same", [0.5, 0.5, None])
    assert (fp.mpp, fp.mpp_images, fp.mpp_spread, fp.mpp_disagree) == (0.5, 2, 1.0, False)
    assert "0.5 µm/px (median of the 2 of 3 images stating it)" in fp.summary()[0]
    fp = folder(tmp_path / "mixed", [0.25, 0.5, 0.5])
    assert (fp.mpp, fp.mpp_spread, fp.mpp_disagree) == (pytest.approx(0.5), pytest.approx(2.0), True)
    assert "they differ up to 2.00x" in fp.summary()[0]
    fp = folder(tmp_path / "none", [None, None])
    assert (fp.mpp, fp.mpp_images) == (None, 0)
    assert "µm/px unknown" in fp.summary()[0]
    assert type(fp).from_dict(fp.to_dict()) == fp
