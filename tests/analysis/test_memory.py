"""Training-step memory and FLOPs against hand counts and a real-device measurement."""

import pytest
import torch
from torch import nn

from seglab.analysis import count_flops, memory_profile
from seglab.analysis.memory import _storage_key
from seglab.models import create_model


def test_conv_relu_by_hand():
    """Conv saves its input (the batch, reported apart) and ReLU its output: 4 x 8 x 8 floats."""
    report = memory_profile(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), 8, 1)
    assert report.activation_bytes == 4 * 8 * 8 * 4
    assert report.parameter_bytes == (4 * 9 + 4) * 4
    assert report.input_bytes == 8 * 8 * 4


def test_allconv_activations_grow_with_depth_and_pixels_params_do_not():
    """Per ConvBNReLU: conv output + BN output (the in-place ReLU reuses it) + BN mean/invstd."""
    def profile(depth, size, batch):
        return memory_profile(create_model("allconv", num_classes=2, depth=depth, width=8), size, batch)

    for depth, size, batch in ((3, 16, 1), (5, 32, 2)):
        expected = depth * (2 * batch * 8 * size * size * 4 + 2 * 8 * 4)
        assert profile(depth, size, batch).activation_bytes == expected
    assert profile(3, 16, 1).parameter_bytes == profile(3, 64, 4).parameter_bytes


def test_meta_profile_equals_real_cpu_saved_tensors():
    model = create_model("unet", num_classes=2, depth=2, base_channels=4).train()
    x = torch.rand(2, 3, 32, 32)
    params = {_storage_key(t) for t in [*model.parameters(), *model.buffers(), x]}
    saved = {}

    def pack(t):
        if _storage_key(t) not in params:
            saved[_storage_key(t)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    assert memory_profile(model, 32, 2).activation_bytes == sum(saved.values())


def test_flops_by_hand():
    model = create_model("allconv", num_classes=2, depth=3, width=8)
    per_pixel_macs = 3 * 8 * 9 + 8 * 8 * 9 * 2 + 8 * 2  # three 3x3 layers + 1x1 head (bias not counted)
    assert count_flops(model, (16, 20), 2) == 2 * 2 * 16 * 20 * per_pixel_macs


def test_measured_peak_covers_the_saved_tensors():
    """A real step holds at least what autograd saves (plus the gradients), and not wildly more."""
    from seglab.analysis import measured_peak_bytes

    model = create_model("allconv", num_classes=2, depth=3, width=8)
    saved = memory_profile(model, 64, 2).activation_bytes
    peak = measured_peak_bytes(model, 64, 2)
    assert saved <= peak < 3 * saved


def test_budget_side_solves_the_fitted_line():
    from seglab.analysis import budget_side

    sides = [10, 20, 40]
    nbytes = [1000 + 4 * s * s for s in sides]
    assert budget_side(sides, nbytes, 1000 + 4 * 100**2) == pytest.approx(100)
    assert budget_side(sides, [5, 5, 5], 100) == float("inf")
