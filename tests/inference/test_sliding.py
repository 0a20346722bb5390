"""Sliding windows: MONAI equality, tile layout, weight maps, band-wise bounded reads, tiling invariance."""

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference

from seglab.errors import ConfigError
from seglab.inference.sliding import iter_prob_bands, sliding_window_probs, tile_starts, weight_map


def tiny_net(seed=0, out=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, out, 3, padding=1)
    ).eval()


@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "blend"),
    [((100, 130), 32, 0.25, "gaussian"), ((20, 50), 32, 0.5, "gaussian"), ((97, 61), 40, 0.3, "gaussian"),
     ((64, 64), 64, 0.25, "gaussian"), ((90, 70), 32, 0.25, "constant"), ((10, 12), 16, 0.25, "gaussian")],
)
def test_equals_monai_sliding_window_inference(shape, tile, overlap, blend):
    net = tiny_net()
    fn = lambda x: net(x).softmax(1)  # noqa: E731
    image = torch.randn(3, *shape)
    with torch.inference_mode():
        ours = sliding_window_probs(image, fn, tile=tile, overlap=overlap, blend=blend, batch_size=3)
        ref = sliding_window_inference(image[None], tile, 3, fn, overlap=overlap, mode=blend, sigma_scale=0.125)[0]
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize(("size", "tile", "overlap"), [(100, 32, 0.25), (300, 256, 0.25), (64, 64, 0.5), (129, 64, 0.9)])
def test_tile_starts_match_monai(size, tile, overlap):
    interval = max(int(tile * (1 - overlap)), 1) if size != tile else tile
    ref = [s[0].start for s in dense_patch_slices((size,), (tile,), (interval,))]
    assert tile_starts(size, tile, overlap) == ref


def test_weight_maps():
    ref = compute_importance_map((48, 40), mode="gaussian", sigma_scale=0.125)
    assert torch.allclose(weight_map(48, 40, "gaussian"), ref, atol=1e-7)
    cos = weight_map(32, 32, "cosine")
    assert cos.min() >= 1e-3 and torch.allclose(cos, cos.flip(0)) and torch.allclose(cos, cos.T)
    assert torch.equal(weight_map(8, 8, "constant"), torch.ones(8, 8))
    with pytest.raises(ConfigError, match="gaussian"):
        weight_map(8, 8, "triangle")


def test_bands_cover_rows_in_order_and_reads_are_bounded():
    net = tiny_net()
    image = torch.randn(3, 150, 90)
    reads = []

    def read(a, b):
        reads.append(b - a)
        return image[:, a:b]

    fn = lambda x: net(x).softmax(1)  # noqa: E731
    with torch.inference_mode():
        bands = list(iter_prob_bands(read, (150, 90), fn, tile=32, overlap=0.25))
        whole = sliding_window_probs(image, fn, tile=32, overlap=0.25)
    assert bands[0][0] == 0 and bands[-1][1] == 150
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:], strict=False))
    assert max(reads) <= 32  # never more than a band of tiles is read
    assert torch.equal(torch.cat([b[2] for b in bands], 1), whole)


def test_tiling_invariance_small_receptive_field():
    net = tiny_net(1)  # receptive field 5 x 5
    fn = lambda x: net(x).softmax(1)  # noqa: E731
    image = torch.randn(3, 160, 160)
    with torch.inference_mode():
        tiled = sliding_window_probs(image, fn, tile=64, overlap=0.25)
        single = sliding_window_probs(image, fn, tile=160)
        direct = fn(image[None])[0]
    assert torch.allclose(single, direct, atol=1e-6)
    # a pixel whose 5 x 5 field lies inside every tile covering it sees identical inputs
    near_edge = np.zeros(160, bool)
    for s in tile_starts(160, 64, 0.25):
        for edge in (s, s + 64):
            if 0 < edge < 160:
                near_edge[max(edge - 2, 0) : edge + 2] = True
    far = torch.from_numpy(~near_edge[:, None] & ~near_edge[None, :])
    diff = (tiled - single).abs().amax(0)
    assert diff[far].max() < 1e-5
    assert diff.mean() < 1e-3  # edge pixels get little weight from the tile they border
