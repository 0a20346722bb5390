"""COCO RLE codec checked against pycocotools on random and edge-case masks."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from seglab.data.rle import mask_to_counts, rle_decode, rle_encode
from seglab.errors import SeglabError


def _masks():
    rng = np.random.default_rng(0)
    yield np.zeros((5, 7), bool)
    yield np.ones((6, 4), bool)
    yield np.eye(9, 11, dtype=bool)
    m = np.zeros((40, 30), bool)
    m[0, 0] = True
    m[-1, -1] = True
    yield m
    for density in (0.05, 0.5, 0.95):
        yield rng.random((37, 53)) < density
    # long runs: large numbers force multi-group and negative deltas in the string form
    big = np.zeros((300, 400), bool)
    big[10:290, 5:200] = True
    big[150, 300:305] = True
    yield big


@pytest.mark.parametrize("mask", list(_masks()))
def test_encode_matches_pycocotools(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = rle_encode(mask)
    assert ours["size"] == list(ref["size"])
    assert ours["counts"] == ref["counts"].decode("ascii")


@pytest.mark.parametrize("mask", list(_masks()))
def test_decode_compressed_and_uncompressed(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    np.testing.assert_array_equal(rle_decode(ref), mask)  # bytes counts, as pycocotools gives
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    h, w = mask.shape
    plain = {"size": [h, w], "counts": mask_to_counts(mask)}
    np.testing.assert_array_equal(rle_decode(plain), mask)
    # pycocotools' own reading of our uncompressed counts agrees
    frpy = coco_mask.frPyObjects(plain, h, w)
    np.testing.assert_array_equal(coco_mask.decode(frpy).astype(bool), mask)


def test_uncompressed_counts_start_with_zero_run():
    mask = np.ones((2, 2), bool)
    assert mask_to_counts(mask) == [0, 4]
    mask[0, 0] = False
    assert mask_to_counts(mask) == [1, 3]


def test_bad_rle_raises():
    with pytest.raises(SeglabError, match="sum to"):
        rle_decode({"size": [3, 3], "counts": [1, 2]})
    with pytest.raises(SeglabError, match="size"):
        rle_decode({"counts": [1]})
