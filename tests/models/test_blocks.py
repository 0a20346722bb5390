"""Up-sampling modes and ASPP checked against obvious transcriptions and torch's own layers."""

import pytest
import torch
import torch.nn.functional as F
from model_tester import copy_in_order, randomize_batchnorm

from seglab.errors import ConfigError
from seglab.models.blocks import ASPPv3, make_upsample
from seglab.models.fastpaths import upsample_concat_conv3x3


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



@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_skip", [False, True])
def test_fused_upsample_concat_conv_equals_the_plain_computation(channels_last, with_skip):
    """The U-Net decoder's fast path: same value and same gradients as up-sample, concat, conv."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    skip = torch.randn(2, 3, 12, 14, dtype=torch.float64) if with_skip else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        skip = None if skip is None else skip.contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 5 + (3 if with_skip else 0), 3, 3, dtype=torch.float64, requires_grad=True)
    x.requires_grad_()
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    expected = F.conv2d(up if skip is None else torch.cat([up, skip], 1), w, padding=1)
    got = upsample_concat_conv3x3(x, skip, w)
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(expected, (x, w), g)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), g), grads)


def test_pointwise_conv_onednn_path_equals_conv2d():
    from seglab.models.fastpaths import PointwiseConv

    torch.manual_seed(0)
    conv = PointwiseConv(6, 5).to(memory_format=torch.channels_last)
    x = torch.randn(2, 6, 9, 11).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = conv(x)
    expected = F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    params = (x, conv.weight, conv.bias)
    torch.testing.assert_close(torch.autograd.grad(out, params, g), torch.autograd.grad(expected, params, g))
    assert set(conv.state_dict()) == set(torch.nn.Conv2d(6, 5, 1).state_dict())
