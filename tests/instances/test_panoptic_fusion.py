"""Panoptic fusion: summed-probability vote per instance, stuff arg-max, minimum stuff area."""

import numpy as np
import pytest

from seglab.instances.panoptic import fuse_panoptic


def test_vote_by_summed_probability_and_stuff():
    # classes: 0 background (stuff), 1 stroma (stuff), 2 tumour (thing), 3 lymphocyte (thing)
    inst = np.zeros((4, 6), int)
    inst[0, :4] = 5
    probs = np.zeros((4, 4, 6))
    probs[:, :, :] = np.array([0.1, 0.6, 0.2, 0.1])[:, None, None]  # stroma everywhere
    probs[:, 0, :3] = np.array([0.25, 0.0, 0.4, 0.35])[:, None]  # 3 px lean tumour
    probs[:, 0, 3] = np.array([0.05, 0.0, 0.05, 0.9])  # 1 px strongly lymphocyte
    probs[:, 3, 4:] = np.array([0.9, 0.05, 0.03, 0.02])[:, None]  # 2 px of background stuff
    r = fuse_panoptic(inst, probs, things=[2, 3], stuffs=[0, 1], min_stuff_area=1)
    # sums: tumour 3 * 0.4 + 0.05 = 1.25, lymphocyte 3 * 0.35 + 0.9 = 1.95 (the arg-max majority says tumour)
    assert r.instance_class == {5: 3}
    assert r.type_prob[5] == pytest.approx(1.95 / (1.95 + 1.25))
    assert (r.classes[0, :4] == 3).all() and r.classes[1, 0] == 1 and (r.classes[3, 4:] == 0).all()
    # the 2-pixel background region is below a minimum area of 3: void
    small = fuse_panoptic(inst, probs, things=[2, 3], stuffs=[0, 1], min_stuff_area=3)
    assert (small.classes[3, 4:] == 255).all() and small.classes[1, 0] == 1


def test_no_instances_and_shape_check():
    probs = np.full((3, 4, 4), 1 / 3)
    r = fuse_panoptic(np.zeros((4, 4), int), probs, things=[2], stuffs=[0, 1], min_stuff_area=0)
    assert r.instance_class == {} and set(np.unique(r.classes)) <= {0, 1}
    with pytest.raises(ValueError, match="do not match"):
        fuse_panoptic(np.zeros((3, 4), int), probs, things=[2], stuffs=[0, 1])
