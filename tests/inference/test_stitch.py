"""Block-wise decoding: nuclei across block borders are neither cut nor doubled; equals whole-image decoding."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.segmentation import find_boundaries, relabel_sequential

from seglab.inference.stitch import decode_blockwise, decode_rows_semantic
from seglab.instances import decode

H, W, BLOCK = 190, 230, 48


def planted_map(seed=0):
    """Touching disc pairs centred on block corners and edges, plus random separate discs."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((H, W), np.int32)
    k = 0
    for y in range(BLOCK, H, BLOCK):
        for x in range(BLOCK, W, BLOCK):
            for cy, cx in ((y, x), (y + 11, x + 2), (y, x - BLOCK // 2), (y - BLOCK // 2, x)):
                k += 1
                labels[disk((cy, cx), 6, shape=(H, W))] = k
    for _ in range(60):
        rr, cc = disk(rng.integers(0, [H, W]), rng.integers(4, 9), shape=(H, W))
        if not ndi.binary_dilation(labels > 0, iterations=2)[rr, cc].any():
            k += 1
            labels[rr, cc] = k
    return relabel_sequential(labels)[0]


def probs_from(labels, method, seed=0):
    """Decoder input derived from the instance map, with tiny noise so the relief has no ties."""
    rng = np.random.default_rng(seed)
    edge = find_boundaries(labels, mode="inner") & (labels > 0)
    if method == "three_class_watershed":
        p = np.stack([labels == 0, (labels > 0) & ~edge, edge]).astype(np.float32)
        p[2] += 1e-3 * rng.random((H, W), np.float32)
        return p
    dist = ndi.distance_transform_edt((labels > 0) & ~edge) + (labels > 0)
    top = ndi.maximum(dist, labels, index=np.arange(labels.max() + 1))
    top[0] = 1
    d = dist / top[labels] + 1e-4 * rng.random((H, W))
    return np.stack([labels > 0, d]).astype(np.float32)


def as_bands(probs, step=37):
    return [(y, min(y + step, H), probs[:, y : y + step]) for y in range(0, H, step)]


def same_partition(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize("name", ["three_class_watershed", "distance_watershed"])
def test_blockwise_equals_whole_image(name):
    gt = planted_map()
    probs = probs_from(gt, name)
    whole = decode(name, probs, min_size=5)
    blocks = decode_blockwise(as_bands(probs), (H, W), lambda p: decode(name, p, min_size=5), block=BLOCK, margin=24)
    assert same_partition(whole, blocks)
    ids = np.unique(blocks)[1:]
    assert ids.size == blocks.max()  # ids unique and dense over the image


def test_planted_nuclei_across_borders_neither_cut_nor_doubled():
    gt = planted_map(1)
    probs = probs_from(gt, "three_class_watershed", 1)
    pred = decode_blockwise(
        as_bands(probs, 29), (H, W), lambda p: decode("three_class_watershed", p, min_size=5), block=BLOCK, margin=24
    )
    assert pred.max() == gt.max()
    for g in range(1, gt.max() + 1):  # each nucleus is one predicted id, covering it
        ids, counts = np.unique(pred[gt == g], return_counts=True)
        assert ids[np.argmax(counts)] > 0 and counts.max() >= 0.9 * counts.sum()
    for p in range(1, pred.max() + 1):  # and each predicted id is one nucleus
        ids, counts = np.unique(gt[pred == p], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum()


def test_memmap_output_and_single_block(tmp_path):
    gt = planted_map(2)
    probs = probs_from(gt, "three_class_watershed", 2)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.int32, shape=(H, W))
    fn = lambda p: decode("three_class_watershed", p, min_size=5)  # noqa: E731
    decode_blockwise(as_bands(probs), (H, W), fn, block=BLOCK, margin=24, out=out)
    out.flush()
    whole = fn(probs)
    assert same_partition(np.load(tmp_path / "out.npy"), whole)
    one_block = decode_blockwise([(0, H, probs)], (H, W), fn, block=1024, margin=24)
    assert np.array_equal(one_block, whole)


def test_pool_decoding_equals_inline():
    from concurrent.futures import ThreadPoolExecutor

    gt = planted_map(3)
    probs = probs_from(gt, "three_class_watershed", 3)
    fn = lambda p: decode("three_class_watershed", p, min_size=5)  # noqa: E731
    inline = decode_blockwise(as_bands(probs), (H, W), fn, block=BLOCK, margin=24)
    with ThreadPoolExecutor(2) as pool:
        pooled = decode_blockwise(as_bands(probs), (H, W), fn, block=BLOCK, margin=24, pool=pool)
    assert np.array_equal(inline, pooled)


def test_semantic_rows_argmax():
    rng = np.random.default_rng(0)
    probs = rng.random((4, H, W)).astype(np.float32)
    assert np.array_equal(decode_rows_semantic(as_bands(probs), (H, W)), probs.argmax(0))
