"""COCO reading and writing checked against pycocotools."""

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from seglab.data.coco import (
    instances_to_coco,
    instances_to_coco_annotations,
    polygon_to_mask,
    read_coco_instances,
)
from seglab.data.synthetic import synth_tile
from seglab.errors import DataError


def _polygons(seed, n, h, w):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = rng.integers(3, 12)
        if i % 4 == 0:  # arbitrary, self-intersecting, partly outside the image
            yield rng.uniform(-5, max(h, w) + 5, 2 * k)
            continue
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        c = rng.uniform(-3, [w + 3, h + 3])
        r = rng.uniform(1, 15, k)
        yield np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], 1).ravel()


@pytest.mark.parametrize("seed", range(4))
def test_polygon_raster_equals_pycocotools(seed):
    h, w = 31 + seed, 45 - seed
    for poly in _polygons(seed, 60, h, w):
        ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly.tolist()], h, w)))
        np.testing.assert_array_equal(polygon_to_mask(poly, h, w), ref.astype(bool))


def _coco_file(tmp_path):
    h, w = 40, 50
    rng = np.random.default_rng(1)
    plain = rng.random((h, w)) < 0.1
    packed = np.zeros((h, w), bool)
    packed[5:20, 30:45] = True
    uncompressed = {"size": [h, w], "counts": [int(c) for c in _counts(plain)]}
    compressed = coco_mask.encode(np.asfortranarray(packed.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    polys = [[5, 5, 20, 6, 18, 25, 4, 20], [22, 22, 35, 24, 30, 38]]
    data = {
        "images": [{"id": 7, "file_name": "sub/a.png", "height": h, "width": w},
                   {"id": 8, "file_name": "b.png", "height": 3, "width": 3}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "segmentation": [polys[0], polys[1]], "iscrowd": 0},
            {"id": 2, "image_id": 8, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 5, "segmentation": uncompressed, "iscrowd": 1},
            {"id": 4, "image_id": 7, "category_id": 2, "segmentation": compressed, "iscrowd": 0},
        ],
        "categories": [{"id": i, "name": str(i)} for i in (1, 2, 3, 5)],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path, data


def _counts(mask):
    from seglab.data.rle import mask_to_counts

    return mask_to_counts(mask)


def test_read_coco_instances_matches_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    path, data = _coco_file(tmp_path)
    api = COCO(str(path))
    expected = np.zeros((40, 50), np.int32)
    anns = [a for a in data["annotations"] if a["image_id"] == 7]
    for k, ann in enumerate(anns, start=1):
        expected[api.annToMask(api.anns[ann["id"]]).astype(bool)] = k
    for key in (7, "a.png", "sub/a.png"):
        inst, classes = read_coco_instances(path, key)
        np.testing.assert_array_equal(inst, expected)
        assert classes == {1: 3, 2: 5, 3: 2}
    inst, classes = read_coco_instances(data, 7, include_crowd=False)
    assert classes == {1: 3, 2: 2} and inst.max() == 2


def test_read_coco_errors(tmp_path):
    path, data = _coco_file(tmp_path)
    with pytest.raises(DataError, match="coco.json: no image 'c.png'"):
        read_coco_instances(path, "c.png")
    data["annotations"][0]["segmentation"] = [[1, 2, 3, 4]]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="annotation 1: bad segmentation"):
        read_coco_instances(path, 7)
    path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable COCO JSON"):
        read_coco_instances(path, 7)


def test_instances_to_coco_matches_pycocotools():
    _, inst = synth_tile(64, seed=2)
    inst = np.where(inst > 0, inst * 3 + 10, 0)  # non-contiguous ids
    inst[0:5, 0:64] = 999  # a stripe crossing columns: bbox spans the full height rule
    inst[60:, 60:] = 1000  # reaches the last pixel: no closing background run
    inst[0, 0] = 1001  # starts at the first pixel: counts open with a zero run
    ids = np.unique(inst[inst > 0])
    anns = instances_to_coco_annotations(inst, image_id=4, classes={999: 2}, first_id=11)
    assert [a["id"] for a in anns] == list(range(11, 11 + len(ids)))
    for ann, i in zip(anns, ids, strict=True):
        m = np.asfortranarray((inst == i).astype(np.uint8))
        ref = coco_mask.encode(m)
        assert ann["segmentation"]["counts"] == ref["counts"].decode()
        assert ann["segmentation"]["size"] == [64, 64]
        assert ann["area"] == int(coco_mask.area(ref))
        assert ann["bbox"] == coco_mask.toBbox(ref).tolist()
        assert ann["category_id"] == (2 if i == 999 else 1) and ann["image_id"] == 4
    coco = instances_to_coco(inst, file_name="t.png", image_id=4, classes={999: 2})
    assert coco["images"] == [{"id": 4, "file_name": "t.png", "height": 64, "width": 64}]
    assert {c["id"] for c in coco["categories"]} == {1, 2}
    back, classes = read_coco_instances(coco, "t.png")
    np.testing.assert_array_equal(back > 0, inst > 0)
    for k, i in enumerate(ids, start=1):
        np.testing.assert_array_equal(back == k, inst == i)
