"""Receptive fields traced from the graph vs hand-computed values and published ones."""

import math

import pytest
import torch
from torch import nn

from seglab.analysis import receptive_field


def rf_of_chain(layers):
    """Slow, obvious transcription: r = 1 + sum_l (k_l - 1) d_l prod_{i<l} s_i (Araujo et al. 2019)."""
    r, jump = 1, 1
    for k, s, d in layers:
        r += (k - 1) * d * jump
        jump *= s
    return r


@pytest.mark.parametrize(("depth", "dilation"), [(4, 1), (4, [1, 2, 4, 8]), (6, [1, 1, 2, 2, 4, 4])])
def test_allconv_by_hand(depth, dilation):
    dilations = [dilation] * depth if isinstance(dilation, int) else dilation
    expected = rf_of_chain([(3, 1, d) for d in dilations] + [(1, 1, 1)])
    rf = receptive_field("allconv", depth=depth, dilation=dilation, size=64)
    assert (rf.height, rf.width) == (expected, expected)


def test_vgg16_and_alexnet_published_values():
    """VGG-16 pool5: 212 px, AlexNet pool5: 195 px (Araujo et al. 2019, Distill, Table 1)."""
    import torchvision

    assert receptive_field(torchvision.models.vgg16().features, size=224).height == 212
    assert receptive_field(torchvision.models.alexnet().features, size=224).height == 195


def test_classic_unet_by_hand():
    """Encoder: the famous 140 px at the bottleneck; each decoder level adds two 3x3 convs."""
    down = [(3, 1, 1), (3, 1, 1), (2, 2, 1)] * 4 + [(3, 1, 1), (3, 1, 1)]
    bottleneck = rf_of_chain(down)
    assert bottleneck == 140
    expected = bottleneck + sum(2 * 2 * j for j in (8, 4, 2, 1))
    assert receptive_field("unet", depth=4, base_channels=4, size=64).height == expected


def test_parallel_branches_take_the_maximum_not_the_sum():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=2, dilation=2)
            self.b = nn.Conv2d(1, 1, 3, padding=4, dilation=4)

        def forward(self, x):
            return self.a(x) + self.b(x)

    assert receptive_field(TwoBranches(), in_channels=1, size=32).height == 9


def test_strided_and_transposed_convs():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 3, 2, 1), nn.ConvTranspose2d(1, 1, 4, 2, 1), nn.Conv2d(1, 1, 3, padding=1))
    # 3 -> 3 + 2*2 = 7 (jump 4); transposed k4 s2 sees 2 inputs: +1*4 = 11 (jump 2); 3x3: +2*2 = 15.
    assert receptive_field(net, in_channels=1, size=32).height == 15


def test_image_pooling_makes_it_global():
    rf = receptive_field("deeplabv3", encoder="timm:test_resnet", size=64)
    assert rf.is_global and math.isinf(rf.height)


def test_leaves_the_model_untouched():
    model = nn.Conv2d(3, 2, 5)
    receptive_field(model, size=16)
    assert model.weight.device == torch.device("cpu")


def test_per_layer_trace_in_execution_order():
    from seglab.analysis import receptive_field_per_layer

    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    layers = receptive_field_per_layer(net, in_channels=1, size=32)
    assert [rf for _, rf in layers] == [3, 5, 7, 15]  # jump 1, 1, 2, 4
    assert [op for op, _ in layers][0] == "convolution"
    assert layers[-1][1] == receptive_field(net, in_channels=1, size=32).height
