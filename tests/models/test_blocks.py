"""Up-sampling modes and ASPP checked against obvious transcriptions and torch's own layers."""

import pytest
import torch
import torch.nn.functional as F
from model_tester import copy_in_order, randomize_batchnorm

from seglab.errors import ConfigError
from seglab.models.blocks import ASPPv3, make_upsample


def test_nearest_unpooling_is_repeat_interleave():
    x = torch.rand(2, 3, 5, 7)
    up = make_upsample("nearest", 3, 3, 2)
    assert not list(up.parameters())
    assert torch.equal(up(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_maxunpool_puts_values_at_the_pooled_positions():
    x = torch.rand(2, 3, 8, 10)
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    out = make_upsample("maxunpool", 3, 3, 2)(pooled, idx)
    assert torch.equal(out, torch.nn.MaxUnpool2d(2)(pooled, idx))
    # By hand: every pooled maximum sits where it came from, everything else is zero.
    expected = torch.zeros_like(x).flatten(2).scatter(2, idx.flatten(2), pooled.flatten(2)).view_as(x)
    assert torch.equal(out, expected)
    assert torch.equal(out[out != 0], x[out != 0])
    assert int((out != 0).sum()) == pooled.numel()


def test_transposed_2x2_stride2_writes_one_kernel_copy_per_input_pixel():
    torch.manual_seed(0)
    up = make_upsample("transposed", 3, 4, 2)
    x = torch.rand(1, 3, 4, 5)
    w, b = up.up.weight, up.up.bias  # in x out x 2 x 2
    expected = torch.einsum("nchw,cokl->nohkwl", x, w).reshape(1, 4, 8, 10) + b.view(1, 4, 1, 1)
    torch.testing.assert_close(up(x), expected)


def test_resize_conv_is_bilinear_then_3x3():
    up = make_upsample("resize_conv", 3, 4, 2)
    x = torch.rand(1, 3, 4, 5)
    expected = up.post(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
    torch.testing.assert_close(up(x), expected)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="nearest"):
        make_upsample("bicubic", 3, 3)


def test_aspp_v3_branch_dilations():
    aspp = ASPPv3(8, 4, (6, 12, 18))
    dilations = [m.dilation for m in aspp.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert dilations == [(6, 6), (12, 12), (18, 18)]
    assert aspp.project[0][0].in_channels == 5 * 4  # 1x1 + three 3x3 + image pooling


def test_aspp_v3_matches_torchvision_aspp_number_by_number():
    from torchvision.models.segmentation.deeplabv3 import ASPP

    torch.manual_seed(0)
    ours, ref = ASPPv3(8, 4, (2, 3, 4)).eval(), ASPP(8, [2, 3, 4], 4).eval()
    randomize_batchnorm(ref)
    copy_in_order(ref, ours)
    x = torch.rand(2, 8, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))

