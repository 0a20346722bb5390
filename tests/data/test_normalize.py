"""Intensity scaling: each mode against a literal computation; tiles see the whole image's range."""

import numpy as np
import pytest
import torch

from seglab.data.normalize import IntensityScaling, read_sampled, sample_grid


def _fluo(shape=(96, 80), seed=0):
    rng = np.random.default_rng(seed)
    return (100 + rng.gamma(2.0, 30.0, (*shape, 1))).astype(np.uint16)


def test_dataset_mode_clips_to_the_given_range():
    image = np.array([[[0, 10]], [[50, 200]]], dtype=np.uint16)  # 2 x 1 x 2 channels
    out = IntensityScaling("dataset", (10.0, 0.0), (50.0, 100.0))(image)
    expected = np.clip((image.astype(np.float32) - [10, 0]) / [40, 100], 0, 1).transpose(2, 0, 1)
    torch.testing.assert_close(out, torch.from_numpy(expected).float())


def test_image_mode_uses_the_images_own_percentiles():
    image = _fluo()
    low, high = np.percentile(image.astype(np.float64), [1.0, 99.8])
    expected = np.clip((image.astype(np.float64) - low) / (high - low), 0, 1).transpose(2, 0, 1)
    torch.testing.assert_close(IntensityScaling("image")(image).double(), torch.from_numpy(expected), atol=1e-6, rtol=0)
    assert IntensityScaling("image")(image * 3).allclose(IntensityScaling("image")(image), atol=1e-3)  # exposure-free


def test_dtype_mode_and_checkpoints_without_a_scaling_record():
    image = np.full((4, 4, 1), 65535, np.uint16)
    scaling = IntensityScaling.from_preprocessing({"in_channels": 1, "mean": [0.0], "std": [1.0]})
    assert scaling.mode == "dtype" and float(scaling(image).max()) == 1.0
    for mode in ("dataset", "image", "dtype"):
        spec = IntensityScaling(mode, (1.0,), (2.0,))
        assert IntensityScaling.from_preprocessing({"intensity": spec.to_preprocessing()}).mode == mode
    with pytest.raises(Exception, match="intensity scaling"):
        IntensityScaling("minmax")


def test_a_band_is_scaled_by_the_whole_images_range():
    image = _fluo((300, 64))
    image[:150] //= 4  # the top half is dim: its own percentiles would stretch it
    scaling = IntensityScaling("image")
    whole_range = scaling.range_of(read_sampled(lambda a, b: image[a:b], *image.shape[:2]))
    assert np.allclose(whole_range, scaling.range_of_array(image))
    band = scaling(image[:100], whole_range)
    torch.testing.assert_close(band, scaling(image)[:, :100])
    assert not torch.allclose(scaling(image[:100]), band)  # its own range would differ
    assert sample_grid((4096, 4096)) == 8  # a large image is sampled, never read whole
