"""Union-find stitching: objects several times the margin (and the block) get one id."""

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from seglab.inference.blocks import BlockGrid, UnionFind, UnionStitcher
from seglab.inference.stitch import decode_blockwise
from seglab.instances import decode
from seglab.metrics.instance import aji

H, W = 220, 260


def big_objects(seed=0):
    """Ellipses up to 90 px long, discs of radius 20-30, a ring (a hole) and small nuclei, some touching."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((H, W), np.int32)
    k = 0
    for cy, cx, ry, rx in ((50, 60, 18, 45), (150, 80, 40, 16), (110, 190, 30, 30), (190, 200, 14, 50)):
        k += 1
        labels[ellipse(cy, cx, ry, rx, shape=(H, W), rotation=rng.uniform(0, np.pi))] = k
    k += 1
    ring = np.zeros((H, W), bool)
    ring[disk((60, 180), 28, shape=(H, W))] = True
    ring[disk((60, 180), 12, shape=(H, W))] = False
    labels[ring & (labels == 0)] = k
    k += 1
    labels[disk((150, 118), 22, shape=(H, W))] = k  # touches the upright ellipse
    for _ in range(40):
        rr, cc = disk(rng.integers(0, [H, W]), rng.integers(3, 6), shape=(H, W))
        if not (labels[rr, cc] > 0).any():
            k += 1
            labels[rr, cc] = k
    return labels


def same_partition(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def probs_from(labels):
    """Three-class probabilities (background, interior, boundary) of a label map, ties broken by noise."""
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(labels, mode="inner") & (labels > 0)
    p = np.stack([labels == 0, (labels > 0) & ~edge, edge]).astype(np.float32)
    p[2] += 1e-3 * np.random.default_rng(0).random(labels.shape, np.float32)
    return p


def bands(probs, step=31):
    return [(y, min(y + step, H), probs[:, y : y + step]) for y in range(0, H, step)]


@pytest.mark.parametrize("block", [24, 40])
def test_components_equal_one_pass_for_objects_larger_than_the_margin(block):
    gt = big_objects()
    probs = (gt > 0).astype(np.float32)[None]
    fn = lambda p: decode("connected_components", p, min_size=0, fill_holes=False)  # noqa: E731
    whole = fn(probs)
    tiled = decode_blockwise(bands(probs), (H, W), fn, block=block, margin=4)
    assert same_partition(whole, tiled)
    assert np.unique(tiled)[1:].size == tiled.max() == whole.max()  # ids unique and dense


@pytest.mark.parametrize("block", [32, 48])
def test_watershed_tiled_matches_one_pass(block):
    gt = big_objects(1)
    probs = probs_from(gt)
    # hole filling is the decoder's one non-local step: a hole wider than a block's view is not
    # seen enclosed there (the ring's hole would stay open where the one pass fills it)
    fn = lambda p: decode("three_class_watershed", p, min_size=5, fill_holes=False)  # noqa: E731
    whole = fn(probs)
    tiled = decode_blockwise(bands(probs), (H, W), fn, block=block, margin=8)  # objects up to 11x the margin
    assert aji(whole, tiled) >= 0.99
    assert tiled.max() == whole.max()


def test_touching_pieces_across_a_face_stay_apart():
    """Two objects meeting exactly on a block face are two objects (both decodings say so)."""
    labels = np.zeros((40, 40), np.int32)
    labels[5:30, 10:20] = 1
    labels[5:30, 20:32] = 2  # face at x = 20
    fn = lambda p: decode("three_class_watershed", p, min_size=1)  # noqa: E731
    probs = probs_from(labels)
    whole = fn(probs)
    tiled = decode_blockwise([(0, 40, probs)], (40, 40), fn, block=20, margin=6)
    assert whole.max() == 2 and same_partition(whole, tiled)


def test_union_find_roots_are_smallest_ids():
    uf = UnionFind()
    assert uf.add(3000) == 1  # grows past its first allocation
    uf.union(2999, 5)
    uf.union(7, 2999)
    uf.union(10, 11)
    roots = uf.roots()
    assert roots[2999] == roots[7] == roots[5] == 5 and roots[11] == 10 and roots[0] == 0 and roots[3] == 3


def test_border_flags_and_empty_blocks():
    grid = BlockGrid(20, 20, 10, 2)
    stitcher = UnionStitcher(grid)
    ext = np.zeros((12, 12), np.int32)
    ext[2:4, 2:4] = 1  # interior
    ext[8:12, 5:7] = 2  # crosses the bottom face
    core, first, border = stitcher.add(0, 0, ext)
    assert first == 1 and border.tolist() == [False, True]
    assert core.dtype == np.uint32 and core[9, 5] == 2
    assert stitcher.add(0, 1, None)[0] is None  # nothing decoded there
    ext = np.zeros((12, 12), np.int32)
    ext[0:4, 5:7] = 1  # the same object seen from below
    core, first, border = stitcher.add(1, 0, ext)
    assert first == 3 and border.tolist() == [True]
    assert stitcher.uf.roots()[3] == 2
