"""The dataset fingerprint against slow, obvious references (skimage regionprops, per-object loops)."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from seglab.data.dataset import find_samples
from seglab.data.fingerprint import compute_fingerprint, fingerprint, fingerprint_folder
from seglab.data.io import Sample, scale_intensity, write_image, write_label
from seglab.errors import DataError


def _discs(rng, size, radii, brighter=True, base=100, lift=300, dtype=np.uint16):
    """A gray image of discs (some touching) and its instance map."""
    label = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for k, r in enumerate(radii, start=1):
        cy, cx = rng.integers(r, size - r, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        label[disc & (label == 0)] = k
    signal = np.where(label > 0, lift if brighter else -lift // 2, 0)
    image = base + (lift // 2 if not brighter else 0) + signal + rng.normal(0, 5, label.shape)
    return np.clip(image, 0, None).astype(dtype)[..., None], label


@pytest.fixture
def fluo16(tmp_path):
    """Four 16-bit fluorescence-like images with a dynamic range of a few hundred counts."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fluo16"
    for i in range(4):
        image, label = _discs(rng, 64, rng.integers(3, 9, 12))
        write_image(root / "images" / f"im{i}.tif", image)
        write_label(root / "labels" / f"im{i}.tif", label)
    return root


def _reference(samples):
    """Per-object loops: equivalent diameters (regionprops), touching objects (dilate each one)."""
    diameters, touching, n = [], 0, 0
    for s in samples:
        from seglab.data.io import read_label

        label = read_label(s.label)
        for region in regionprops(label):
            diameters.append(region.equivalent_diameter_area)
            grown = ndimage.binary_dilation(label == region.label, structure=ndimage.generate_binary_structure(2, 1))
            others = label[grown & (label != region.label)]
            touching += bool(np.any(others > 0))
            n += 1
    return np.array(diameters), touching / n


def test_objects_match_regionprops_and_a_per_object_loop(fluo16):
    samples = find_samples(fluo16)
    fp = compute_fingerprint(samples)
    diameters, touching = _reference(samples)
    assert fp.diameters["median"] == pytest.approx(np.median(diameters))
    assert fp.diameters["p95"] == pytest.approx(np.percentile(diameters, 95))
    assert fp.touching_share == pytest.approx(touching)
    assert sum(fp.objects_per_image) == diameters.size
    assert fp.areas["median"] == pytest.approx(np.median(math.pi * diameters**2 / 4))


def test_intensity_is_in_stored_units_and_fluorescence_is_recognised(fluo16):
    samples = find_samples(fluo16)
    fp = compute_fingerprint(samples)
    from seglab.data.io import read_image

    pixels = np.concatenate([read_image(s.image).reshape(-1) for s in samples]).astype(np.float64)
    assert fp.dtype == "uint16" and fp.channels == 1
    assert fp.clip_low[0] == pytest.approx(np.percentile(pixels, 0.5))  # every pixel sampled (small images)
    assert fp.clip_high[0] == pytest.approx(np.percentile(pixels, 99.5))
    assert fp.clip_high[0] - fp.clip_low[0] < 500  # a few hundred counts of 65535
    assert fp.objects_brighter is True
    # clipped to the percentiles, the images fill [0, 1]; the z-score statistics are of that
    scaled = scale_intensity(pixels.reshape(-1, 1, 1), fp.clip_low, fp.clip_high).numpy().ravel()
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert fp.clipped_mean[0] == pytest.approx(scaled.mean(), abs=1e-6)
    assert fp.clipped_std[0] == pytest.approx(scaled.std(), abs=1e-6)


def test_brightfield_objects_are_darker(tmp_path):
    rng = np.random.default_rng(1)
    image, label = _discs(rng, 64, [6, 7, 8], brighter=False, base=200, lift=100, dtype=np.uint8)
    write_image(tmp_path / "images" / "a.png", np.repeat(image, 3, -1))
    write_label(tmp_path / "labels" / "a.tif", label)
    fp = fingerprint_folder(tmp_path)
    assert fp.objects_brighter is False and fp.channels == 3


def test_cached_until_a_file_changes(fluo16, monkeypatch):
    first = fingerprint_folder(fluo16)
    assert (fluo16 / ".seglab" / "fingerprint-instance.json").is_file()
    import seglab.data.dataset as dataset

    def no_reads(sample):
        raise AssertionError("read a file although the cache is valid")

    monkeypatch.setattr(dataset, "read_sample", no_reads)
    assert fingerprint_folder(fluo16) == first
    monkeypatch.undo()
    label = fluo16 / "labels" / "im0.tif"
    write_label(label, np.zeros((64, 64), np.int32))  # one image loses its objects
    again = fingerprint_folder(fluo16)
    assert sum(again.objects_per_image) < sum(first.objects_per_image)


def test_problems_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    image, label = _discs(rng, 32, [4, 5])
    write_image(tmp_path / "images" / "a.tif", image)
    write_label(tmp_path / "labels" / "a.tif", label)
    write_image(tmp_path / "images" / "b.png", np.zeros((32, 32, 3), np.uint8))
    write_label(tmp_path / "labels" / "b.tif", label)
    with pytest.raises(DataError, match=r"b\.png.*3 channels"):
        compute_fingerprint(find_samples(tmp_path))
    write_image(tmp_path / "images" / "b.png", np.zeros((32, 32), np.uint8))
    write_label(tmp_path / "labels" / "b.tif", np.zeros((30, 32), np.int32))
    with pytest.raises(DataError, match=r"labels/b\.tif.*differs"):
        compute_fingerprint(find_samples(tmp_path))


def test_semantic_classes_and_components(tmp_path):
    classes = np.zeros((40, 40), np.uint8)
    classes[2:10, 2:10] = 1
    classes[20:30, 20:30] = 3
    classes[0, :] = 255
    write_image(tmp_path / "images" / "a.png", np.full((40, 40), 128, np.uint8))
    write_label(tmp_path / "labels" / "a.png", classes)
    fp = fingerprint([Sample("a", tmp_path / "images" / "a.png", tmp_path / "labels" / "a.png")], task="semantic")
    assert fp.max_class == 3
    assert fp.class_pixels == {"0": 1600 - 64 - 100 - 40, "1": 64, "3": 100, "255": 40}
    assert fp.objects_per_image == [2]
