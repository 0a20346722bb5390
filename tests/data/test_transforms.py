"""Joint transforms: labels never interpolated, shapes kept, repeatable, HED as skimage."""

import numpy as np
import pytest
import torch
from skimage.color import hed2rgb, rgb2hed
from torchvision.transforms import v2

from seglab.data.transforms import (
    MASK_FILL,
    RandomStainJitter,
    build_transforms,
    hed_to_rgb,
    rgb_to_hed,
)
from seglab.errors import ConfigError


def _pair(channels=3, h=48, w=48):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(channels, h, w, generator=g)
    label = torch.randint(0, 5, (h // 8, w // 8), generator=g) * 37 + 3  # ids 3..151, no 0
    label = label.repeat_interleave(8, 0).repeat_interleave(8, 1)
    return image, label


@pytest.mark.parametrize("preset", ["none", "default", "strong"])
@pytest.mark.parametrize("channels", [1, 3])
def test_labels_keep_their_values_and_shapes(preset, channels):
    image, label = _pair(channels)
    transform = build_transforms(preset, channels=channels)
    allowed = set(label.unique().tolist()) | {MASK_FILL}  # outside the image after affine/elastic
    torch.manual_seed(1)
    for _ in range(15):
        out_img, out_lab = transform(image, label)
        assert out_img.shape == image.shape and out_lab.shape == label.shape
        assert out_img.dtype == torch.float32 and out_lab.dtype == torch.int64
        assert type(out_img) is torch.Tensor and type(out_lab) is torch.Tensor
        assert set(out_lab.unique().tolist()) <= allowed
        assert out_img.min() >= 0 and out_img.max() <= 1


def test_geometry_moves_image_and_label_together():
    # image channel 0 holds the label itself: any geometric step must keep them aligned
    _, label = _pair()
    image = torch.stack([label.float() / 255, torch.zeros_like(label, dtype=torch.float32)])
    transform = build_transforms("default", channels=2)
    transform.pipeline = v2.Compose(transform.pipeline.transforms[:3])  # flips + rot90 only
    torch.manual_seed(3)
    for _ in range(10):
        out_img, out_lab = transform(image, label)
        np.testing.assert_allclose(out_img[0].numpy() * 255, out_lab.float().numpy(), atol=1e-3)


def test_elastic_and_affine_label_is_nearest_not_interpolated():
    transform = build_transforms("strong", channels=3)
    label = torch.zeros(64, 64, dtype=torch.int64)
    label[10:30, 10:30] = 1
    label[30:50, 20:60] = 1000  # ids far apart: interpolation would create values in between
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        seen |= set(transform(torch.rand(3, 64, 64), label)[1].unique().tolist())
    assert seen <= {0, 1, 1000, MASK_FILL}


def test_non_square_inputs_keep_shape():
    image, label = _pair(3, 32, 56)
    transform = build_transforms("default")
    torch.manual_seed(0)
    for _ in range(12):
        out_img, out_lab = transform(image, label)
        assert out_img.shape == (3, 32, 56) and out_lab.shape == (32, 56)


@pytest.mark.parametrize("preset", ["default", "strong"])
def test_deterministic_under_manual_seed(preset):
    image, label = _pair()
    transform = build_transforms(preset)
    torch.manual_seed(42)
    first = [transform(image, label) for _ in range(5)]
    torch.manual_seed(42)
    second = [transform(image, label) for _ in range(5)]
    for (a, b), (c, d) in zip(first, second, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_hed_conversion_matches_skimage():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.05, 1, (16, 16, 3))
    ours = rgb_to_hed(torch.from_numpy(rgb).permute(2, 0, 1).float())
    ref = rgb2hed(rgb)
    np.testing.assert_allclose(ours.clamp(min=0).permute(1, 2, 0).numpy(), ref, atol=1e-5)
    back = hed_to_rgb(torch.from_numpy(ref).permute(2, 0, 1).float())
    np.testing.assert_allclose(back.permute(1, 2, 0).numpy(), hed2rgb(ref), atol=1e-5)
    # without skimage's clipping the round trip is exact
    np.testing.assert_allclose(hed_to_rgb(ours).permute(1, 2, 0).numpy(), rgb, atol=1e-4)


def test_stain_jitter_is_alpha_s_plus_beta_in_hed_space():
    jitter = RandomStainJitter(sigma=0.2, bias=0.01)
    rgb = torch.rand(3, 8, 8) * 0.9 + 0.05
    params = {"alpha": torch.tensor([1.1, 0.9, 1.0]), "beta": torch.tensor([0.01, -0.005, 0.0])}
    out = jitter.transform(rgb, params)
    unclipped = rgb_to_hed(rgb).permute(1, 2, 0).numpy()
    expected = hed2rgb(unclipped * [1.1, 0.9, 1.0] + [0.01, -0.005, 0.0])
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="default, none, strong"):
        build_transforms("wild")


def test_exposed_label_pixels_are_the_datasets_padding_sentinel():
    from seglab.data import dataset

    assert MASK_FILL == dataset._PAD  # SegmentationDataset turns both into ignore
    transform = build_transforms("strong", channels=3)
    steps = [t for step in transform.pipeline.transforms if isinstance(step, v2.RandomApply) for t in step.transforms]
    transform.pipeline = next(t for t in steps if isinstance(t, v2.RandomAffine))  # always applied
    image, label = torch.ones(3, 32, 32), torch.full((32, 32), 7, dtype=torch.int64)
    torch.manual_seed(0)
    exposed = 0
    for _ in range(5):
        out_img, out_lab = transform(image, label)
        assert out_lab.dtype == torch.int64 and set(out_lab.unique().tolist()) <= {MASK_FILL, 7}
        np.testing.assert_array_equal((out_lab == MASK_FILL).numpy(), (out_img == 0).all(0).numpy())
        exposed += int((out_lab == MASK_FILL).sum())
    assert exposed > 0
