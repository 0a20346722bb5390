"""Detections -> instance map: overlaps resolved by score (vs a slow painting loop), thresholds,
tiled merging (each object once; the highest owned score per pixel, vs a slow transcription)."""

import numpy as np
import pytest
import torch

from seglab.data.detection import instances_to_target
from seglab.instances.detections import detections_to_instances, merge_tiled_detections


def _paint_reference(masks, scores, score_threshold, mask_threshold):
    """Paint kept masks one by one in increasing score order: the highest score wins."""
    out = np.zeros(masks.shape[1:], np.int32)
    order = sorted((s, i) for i, s in enumerate(scores) if s >= score_threshold)
    for k, (_, i) in enumerate(order, start=1):
        out[masks[i] > mask_threshold] = k
    return out


def test_overlaps_resolved_by_score():
    rng = np.random.default_rng(0)
    masks = np.zeros((40, 1, 50, 60), np.float32)
    for m in masks:
        r, c, h, w = rng.integers(0, 40), rng.integers(0, 50), rng.integers(4, 20), rng.integers(4, 20)
        m[0, r:r + h, c:c + w] = rng.uniform(0.3, 1.0)
    scores = rng.permutation(np.linspace(0.05, 0.99, 40))
    ours = detections_to_instances({"masks": torch.from_numpy(masks), "scores": torch.from_numpy(scores)},
                                   score_threshold=0.3, mask_threshold=0.5)
    ref = _paint_reference(masks[:, 0], scores, 0.3, 0.5)
    from skimage.segmentation import relabel_sequential

    np.testing.assert_array_equal(ours, relabel_sequential(ref)[0])
    assert ours.dtype == np.int32


def test_highest_score_wins_and_min_size():
    masks = np.zeros((3, 10, 10), np.float32)
    masks[0, 0:6, 0:6] = 0.9  # score 0.6
    masks[1, 3:9, 3:9] = 0.8  # score 0.9: takes the shared pixels
    masks[2, 0:2, 8:10] = 1.0  # score 0.7, 4 pixels
    out = detections_to_instances({"masks": masks, "scores": np.array([0.6, 0.9, 0.7])}, min_size=5)
    assert (out[3:6, 3:6] == out[8, 8]).all() and out[8, 8] > 0
    assert out[0, 0] > 0 and out[0, 0] != out[8, 8]
    assert out[0, 9] == 0 and out.max() == 2


def test_no_detections():
    empty = {"masks": torch.zeros(0, 1, 12, 14), "scores": torch.zeros(0)}
    assert detections_to_instances(empty).shape == (12, 14)
    out = detections_to_instances({"masks": np.zeros((0, 1, 0, 0)), "scores": np.zeros(0)}, image_shape=(5, 6))
    assert out.shape == (5, 6) and out.max() == 0


def test_merge_keeps_each_object_once():
    inst = np.zeros((10, 16), np.int32)
    inst[3:6, 6:10] = 1  # inside both tiles' overlap [6, 10)
    tiles, origins = [], [(0, 0), (0, 6)]
    for _, left in origins:
        t = instances_to_target(inst[:, left:left + 10])
        tiles.append({"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "masks": t["masks"][:, None].float()})
    merged = merge_tiled_detections(tiles, origins, inst.shape, tile_size=(10, 10))
    np.testing.assert_array_equal(merged, inst)


def test_streaming_merge_equals_highest_owned_score_per_pixel():
    """Random overlapping masks over a 2 x 2 tile grid: every pixel goes to the highest-scoring
    detection that covers it among those kept by their owning tile (slow transcription)."""
    rng = np.random.default_rng(4)
    shape, size, origins = (30, 34), (20, 20), [(0, 0), (0, 14), (10, 0), (10, 14)]
    bands = {"r": {0: (0, 15), 10: (15, 30)}, "c": {0: (0, 17), 14: (17, 34)}}
    tiles, expected_best, expected_owner = [], np.full(shape, -1.0), np.zeros(shape, int)
    serial = 0
    for top, left in origins:
        k = 12
        masks = np.zeros((k, *size), bool)
        boxes = np.zeros((k, 4), np.float32)
        for i in range(k):
            y0, x0 = rng.integers(0, 14, 2)
            y1, x1 = y0 + rng.integers(3, 7), x0 + rng.integers(3, 7)
            masks[i, y0:y1, x0:x1] = True
            boxes[i] = (x0, y0, x1, y1)
        scores = rng.uniform(0.3, 1.0, k)
        tiles.append({"boxes": torch.from_numpy(boxes), "scores": torch.from_numpy(scores),
                      "masks": torch.from_numpy(masks[:, None].astype(np.float32))})
        for i in range(k):
            cy, cx = top + (boxes[i, 1] + boxes[i, 3]) / 2, left + (boxes[i, 0] + boxes[i, 2]) / 2
            (r0, r1), (c0, c1) = bands["r"][top], bands["c"][left]
            if scores[i] < 0.5 or not (r0 <= cy < r1 and c0 <= cx < c1):
                continue
            serial += 1
            for y, x in zip(*np.nonzero(masks[i]), strict=True):
                if scores[i] > expected_best[top + y, left + x]:
                    expected_best[top + y, left + x] = scores[i]
                    expected_owner[top + y, left + x] = serial
    merged = merge_tiled_detections(tiles, origins, shape, tile_size=size)
    from seglab.metrics import aji

    assert expected_owner.max() > 10
    assert aji(expected_owner, merged) == pytest.approx(1.0)
    assert len(np.unique(merged)) == len(np.unique(expected_owner))
