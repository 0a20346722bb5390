"""Embedding decoders: exact recovery of known instance maps, agreement with scikit-learn
(MeanShift, DBSCAN), a slow pixel-by-pixel transcription of the seed decoder, 0 and 1 instance."""

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from seglab.data.synthetic import synth_tile
from seglab.errors import ConfigError
from seglab.instances.embedding import (
    embedding_meanshift,
    embedding_seeds,
    meanshift_cluster,
    pair_similarity,
    with_coordinates,
)
from seglab.metrics import aji

E = 6


def _embedding_stack(inst: np.ndarray, *, seed: int = 0, spread: float = 3.0, noise: float = 0.08,
                     seediness: bool = False) -> np.ndarray:
    """Foreground prob + (seediness) + embeddings: one random centre per instance plus noise."""
    rng = np.random.default_rng(seed)
    ids = np.unique(inst)
    centres = rng.normal(0.0, spread, (ids.max() + 1, E))
    emb = centres[inst].transpose(2, 0, 1) + rng.normal(0, noise, (E, *inst.shape))
    fg = np.where(inst > 0, 0.9, 0.1)[None]
    parts = [fg]
    if seediness:
        # highest at each instance's pixels nearest its mean (a distance-like score)
        from scipy import ndimage

        dist = ndimage.distance_transform_edt(inst > 0)
        top = np.zeros(ids.max() + 1)
        np.maximum.at(top, inst.ravel(), dist.ravel())
        parts.append((dist / np.maximum(top[inst], 1))[None])
    parts.append(emb)
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def tile():
    return synth_tile(96, seed=3)[1]


def test_meanshift_recovers_instance_map(tile):
    pred = embedding_meanshift(_embedding_stack(tile), min_size=0)
    assert tile.max() > 5
    assert aji(tile, pred) == pytest.approx(1.0)
    assert pred.dtype == np.int32 and pred.max() == len(np.unique(tile)) - 1


def test_meanshift_without_component_split_and_gaussian_kernel(tile):
    stack = _embedding_stack(tile, seed=1)
    for kwargs in ({"split_components": False}, {"kernel": "gaussian", "bandwidth": 0.5}):
        assert aji(tile, embedding_meanshift(stack, min_size=0, **kwargs)) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["dbscan", "hdbscan"])
def test_sklearn_methods_recover_instance_map(tile, method):
    pred = embedding_meanshift(_embedding_stack(tile, seed=2), method=method, min_size=0, min_samples=3)
    assert aji(tile, pred) == pytest.approx(1.0)


def test_meanshift_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 2.0, (7, 3))
    sizes = [400, 250, 120, 60, 30, 15, 8]  # small clusters must still get a mode
    points = np.concatenate([c + rng.normal(0, 0.2, (s, 3)) for c, s in zip(centres, sizes, strict=True)])
    ours, modes = meanshift_cluster(torch.from_numpy(points), bandwidth=0.8, n_seeds=32)
    ref = MeanShift(bandwidth=0.8).fit(points)
    assert adjusted_rand_score(ref.labels_, ours.numpy()) == pytest.approx(1.0)
    # the modes match sklearn's cluster centres one to one
    d = np.linalg.norm(modes.numpy()[:, None] - ref.cluster_centers_[None], axis=-1)
    assert len(modes) == len(ref.cluster_centers_)
    assert d.min(1).max() < 0.05 and d.min(0).max() < 0.05


def test_meanshift_zero_and_one_instance():
    empty = np.zeros((40, 50), np.int32)
    for stack in (_embedding_stack(empty), np.zeros((1 + E, 40, 50), np.float32)):
        pred = embedding_meanshift(stack)
        assert pred.shape == (40, 50) and pred.dtype == np.int32 and pred.max() == 0
    one = empty.copy()
    one[10:20, 5:30] = 4
    pred = embedding_meanshift(_embedding_stack(one))
    np.testing.assert_array_equal(pred, (one > 0).astype(np.int32))


def test_meanshift_normalize_and_min_size():
    inst = np.zeros((30, 30), np.int32)
    inst[2:12, 2:12], inst[15:28, 15:28], inst[2:4, 20:22] = 1, 2, 3  # instance 3: 4 pixels
    stack = _embedding_stack(inst)
    pred = embedding_meanshift(stack, normalize=True, bandwidth=0.3, min_size=5)
    expected = np.where(inst == 3, 0, inst)
    assert aji(expected, pred) == pytest.approx(1.0)


def _seeds_reference(stack, fg_threshold, seed_threshold, sim_threshold):
    """Pixel-by-pixel transcription of the greedy seed decoder (no rest assignment, no split)."""
    fg = stack[0] > fg_threshold
    seed_map, emb = stack[1], stack[2:]
    labels = np.zeros(fg.shape, np.int32)
    k = 0
    while True:
        best, where = -1.0, None
        for r in range(fg.shape[0]):
            for c in range(fg.shape[1]):
                if fg[r, c] and labels[r, c] == 0 and seed_map[r, c] > best:
                    best, where = seed_map[r, c], (r, c)
        if where is None or best < seed_threshold:
            return labels
        k += 1
        e0 = emb[:, where[0], where[1]]
        for r in range(fg.shape[0]):
            for c in range(fg.shape[1]):
                if fg[r, c] and labels[r, c] == 0:
                    d2 = float(((emb[:, r, c] - e0) ** 2).sum())
                    if 2.0 / (1.0 + np.exp(d2)) > sim_threshold or (r, c) == where:
                        labels[r, c] = k


def test_seeds_match_slow_transcription():
    rng = np.random.default_rng(5)
    stack = np.concatenate([rng.random((2, 14, 16)), rng.normal(0, 0.7, (3, 14, 16))]).astype(np.float32)
    ref = _seeds_reference(stack, 0.3, 0.2, 0.5)
    ours = embedding_seeds(stack, fg_threshold=0.3, seed_threshold=0.2, similarity_threshold=0.5,
                           assign_rest=False, min_size=0, split_components=False)
    assert ref.max() > 3
    np.testing.assert_array_equal(ours, ref)


def test_pair_similarity_formula():
    d2 = torch.tensor([0.0, 0.5, np.log(3.0), 4.0])
    expected = torch.tensor([2.0 / (1.0 + np.exp(v)) for v in d2.tolist()])
    torch.testing.assert_close(pair_similarity(d2), expected)
    assert pair_similarity(d2)[2] == pytest.approx(0.5)


def test_seeds_recover_instance_map(tile):
    stack = _embedding_stack(tile, seed=4, seediness=True)
    pred = embedding_seeds(stack, min_size=0)
    assert aji(tile, pred) == pytest.approx(1.0)


def test_seeds_zero_and_one_instance():
    empty = np.zeros((20, 24), np.int32)
    assert embedding_seeds(_embedding_stack(empty, seediness=True)).max() == 0
    one = empty.copy()
    one[3:15, 4:20] = 9
    pred = embedding_seeds(_embedding_stack(one, seediness=True))
    np.testing.assert_array_equal(pred, (one > 0).astype(np.int32))
    # foreground but no pixel reaches the seed threshold: nothing to seed
    stack = _embedding_stack(one, seediness=True)
    stack[1] = 0.0
    assert embedding_seeds(stack).max() == 0


def test_bad_stack_and_method():
    from seglab.errors import ConfigError

    with pytest.raises(ValueError):
        embedding_meanshift(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError):
        embedding_seeds(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ConfigError):
        embedding_meanshift(np.zeros((3, 5, 5), np.float32), method="kmeans")


def test_with_coordinates_matches_loop():
    emb = torch.randn(2, 3, 5, 7)
    out = with_coordinates(emb, 4.0)
    expected = emb.clone()
    for y in range(5):
        for x in range(7):
            expected[:, 0, y, x] += y / 4.0
            expected[:, 1, y, x] += x / 4.0
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(with_coordinates(emb[0], 4.0), expected[0])  # unbatched E x H x W
    assert with_coordinates(emb, 0.0) is emb
    with pytest.raises(ConfigError, match="embedding_dim >= 2"):
        with_coordinates(torch.zeros(1, 1, 4, 4), 2.0)


@pytest.mark.parametrize("decoder", ["meanshift", "seeds"])
def test_spatial_embeddings_separate_lookalike_instances(tile, decoder):
    """Offsets that point every pixel to its instance's centre: with the coordinates added back
    the decoder recovers each instance, although the raw outputs of far-apart instances overlap."""
    unit = 4.0
    ys, xs = np.mgrid[: tile.shape[0], : tile.shape[1]].astype(np.float64)
    ids = np.unique(tile)[1:]
    cy = np.zeros(tile.max() + 1)
    cx = np.zeros(tile.max() + 1)
    for i in ids:
        cy[i], cx[i] = ys[tile == i].mean(), xs[tile == i].mean()
    offsets = np.zeros((E, *tile.shape))
    offsets[0] = np.where(tile > 0, (cy[tile] - ys) / unit, 0)
    offsets[1] = np.where(tile > 0, (cx[tile] - xs) / unit, 0)
    fg = np.where(tile > 0, 0.9, 0.1)[None]
    if decoder == "meanshift":
        stack = np.concatenate([fg, offsets]).astype(np.float32)
        pred = embedding_meanshift(stack, coord_unit=unit, min_size=0, split_components=False)
        plain = embedding_meanshift(stack, min_size=0, split_components=False)
    else:
        seediness = np.where(tile > 0, 1.0 / (1.0 + np.hypot(offsets[0], offsets[1])), 0)[None]
        stack = np.concatenate([fg, seediness, offsets]).astype(np.float32)
        pred = embedding_seeds(stack, coord_unit=unit, min_size=0, split_components=False)
        plain = embedding_seeds(stack, min_size=0, split_components=False)
    assert aji(tile, pred) > 0.95
    assert aji(tile, plain) < 0.5  # the same outputs without positions: instances merge
