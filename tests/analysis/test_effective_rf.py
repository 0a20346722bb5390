"""Effective receptive field: hand-made kernels give known gradient maps."""

import numpy as np
import pytest
import torch
from torch import nn

from seglab.analysis import effective_receptive_field, effective_rf_size


def box(k: int) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def test_box_kernels_by_hand():
    grad = effective_receptive_field(box(3), in_channels=1, size=15, samples=2)
    expected = np.zeros((15, 15))
    expected[6:9, 6:9] = 1 / 9
    np.testing.assert_allclose(grad, expected)
    assert effective_rf_size(grad) == 3
    # two stacked 3x3 boxes: a 5x5 pyramid (1 2 3 2 1 squared); the 3x3 core holds (7/9)^2 = 0.60 of the mass
    grad = effective_receptive_field(nn.Sequential(box(3), box(3)), in_channels=1, size=15, samples=1)
    assert effective_rf_size(grad, mass=0.95) == 5
    assert effective_rf_size(grad, mass=0.6) == 3
    assert effective_rf_size(grad, mass=0.61) == 5


def test_size_of_degenerate_maps():
    one = np.zeros((9, 9))
    one[4, 4] = 1
    assert effective_rf_size(one) == 1
    assert effective_rf_size(np.zeros((9, 9))) == 0


def test_strided_output_uses_its_centre_and_leaves_model_untouched():
    net = nn.Sequential(box(3), nn.MaxPool2d(2))
    grad = effective_receptive_field(net, in_channels=1, size=16, samples=3)
    assert grad.sum() == pytest.approx(1.0)
    assert net[0].weight.requires_grad and net[0].weight.grad is None
    assert torch.equal(net[0].weight, torch.ones_like(net[0].weight))
