"""Instance map -> torchvision detection target, checked against scikit-image regionprops and
torchvision's masks_to_boxes; empty images; round trip through detections_to_instances."""

import numpy as np
import torch
from skimage.measure import regionprops
from torchvision.ops import masks_to_boxes

from seglab.data.detection import batch_to_targets, instances_to_target
from seglab.data.synthetic import synth_tile
from seglab.instances.detections import detections_to_instances


def test_boxes_and_masks_match_references():
    inst = synth_tile(64, seed=2)[1] * 3  # non-contiguous ids
    inst[0, 0] = 0
    inst[63, 10] = 500  # a one-pixel instance at the border
    target = instances_to_target(inst)
    props = sorted(regionprops(inst), key=lambda p: p.label)
    k = len(props)
    assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
    expected = np.array([[p.bbox[1], p.bbox[0], p.bbox[3], p.bbox[2]] for p in props], dtype=np.float32)
    np.testing.assert_array_equal(target["boxes"].numpy(), expected)
    for mask, p in zip(target["masks"].numpy(), props, strict=True):
        np.testing.assert_array_equal(mask, (inst == p.label).astype(np.uint8))
    # torchvision's masks_to_boxes gives the inclusive last pixel: ours is one more at x2, y2
    tv = masks_to_boxes(target["masks"].bool())
    torch.testing.assert_close(target["boxes"], tv + torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert target["masks"].dtype == torch.uint8 and (target["labels"] == 1).all()
    assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()


def test_empty_image_gives_empty_tensors():
    target = instances_to_target(np.zeros((20, 30), np.int32))
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 20, 30) and target["masks"].dtype == torch.uint8


def test_batch_and_tensor_input():
    inst = torch.zeros(2, 16, 16, dtype=torch.long)
    inst[0, 2:5, 3:9] = 7
    targets = batch_to_targets(inst, category=2)
    assert len(targets) == 2 and targets[1]["boxes"].shape == (0, 4)
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[3.0, 2.0, 9.0, 5.0]]))
    assert targets[0]["labels"].tolist() == [2]


def test_round_trip():
    inst = synth_tile(64, seed=4)[1]
    target = instances_to_target(inst)
    k = len(target["boxes"])
    detections = {"scores": torch.ones(k), "masks": target["masks"][:, None].float()}
    back = detections_to_instances(detections)
    ids = np.unique(inst)[1:]
    expected = np.zeros_like(inst)
    expected[inst > 0] = np.searchsorted(ids, inst[inst > 0]) + 1
    np.testing.assert_array_equal(back, expected)
