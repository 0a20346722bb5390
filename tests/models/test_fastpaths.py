"""Each exact fast path against the plain computation it replaces: values and gradients.

Float64 where the fast path allows it (the comparison is then to rounding); the oneDNN-only
paths run in float32, where the plain path is PyTorch's own convolution or resize.
"""

import pytest
import torch
import torch.nn.functional as F

from seglab.models import create_model
from seglab.models.blocks import ImagePooling
from seglab.models.fastpaths import (
    DepthwiseConv,
    PointwiseConv,
    bilinear_resize,
    is_channels_last,
    layout_like,
    onednn_layout,
    reference_ops,
)

CL = torch.channels_last


def _grads(out: torch.Tensor, inputs: tuple[torch.Tensor, ...], g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("size", "dilation", "kernel"), [((6, 7), 7, 3), ((6, 7), 9, 5), ((5, 5), 5, 3), ((6, 7), 6, 3)])
def test_depthwise_conv_equals_conv2d(channels_last, size, dilation, kernel):
    """Dilation at or past the map: the centre-tap product; (6, 7) at dilation 6 still convolves."""
    torch.manual_seed(0)
    conv = DepthwiseConv(4, kernel, dilation=dilation).double()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    x = x.contiguous(memory_format=CL if channels_last else torch.contiguous_format).requires_grad_()
    expected = F.conv2d(x, conv.weight, padding=conv.padding, dilation=conv.dilation, groups=4)
    got = conv(x)
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(expected)
    torch.testing.assert_close(_grads(got, (x, conv.weight), g), _grads(expected, (x, conv.weight), g))
    assert set(conv.state_dict()) == {"weight"}


def test_depthwise_conv_centre_path_is_off_under_reference_ops():
    conv = DepthwiseConv(3, 3, dilation=8)
    x = torch.rand(1, 3, 4, 4)
    assert "Mul" in type(conv(x).grad_fn).__name__
    with reference_ops():
        assert "Convolution" in type(conv(x).grad_fn).__name__


@pytest.mark.parametrize("out_size", [(64, 64), (20, 27)])
def test_bilinear_resize_through_concat_equals_interpolate(out_size):
    """The DeepLabV3+ decoder's use: resized, concatenated, so the gradient arrives as a slice."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 16, 9).contiguous(memory_format=CL).requires_grad_()
    other = torch.randn(2, 3, *out_size).contiguous(memory_format=CL)
    expected = torch.cat([F.interpolate(x, size=out_size, mode="bilinear", align_corners=False), other], 1)
    got = torch.cat([bilinear_resize(x, out_size), other], 1)
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(expected)
    (grad,) = _grads(got, (x,), g)
    torch.testing.assert_close(grad, _grads(expected, (x,), g)[0])
    assert is_channels_last(grad)


def test_pointwise_conv_equals_conv2d_in_both_layouts_and_strides():
    torch.manual_seed(0)
    for stride in (1, 2):
        conv = PointwiseConv(6, 5, stride=stride)
        for fmt in (torch.contiguous_format, CL):
            x = torch.randn(3, 6, 9, 11).contiguous(memory_format=fmt).requires_grad_()
            out = conv(x)
            expected = F.conv2d(x, conv.weight, conv.bias, stride=stride)
            torch.testing.assert_close(out, expected)
            g = torch.randn_like(out)
            params = (x, conv.weight, conv.bias)
            torch.testing.assert_close(_grads(out, params, g), _grads(expected, params, g))


def test_onednn_layout_changes_strides_only():
    x = torch.rand(2, 5, 4, 6)
    y = onednn_layout(x)
    assert is_channels_last(y) and torch.equal(x, y)
    assert onednn_layout(y) is y
    with reference_ops():
        assert onednn_layout(x) is x


def test_image_pooling_keeps_channels_last():
    """Else the ASPP concatenation comes out NCHW and the projection copies it back."""
    pool = ImagePooling(8, 4).train()
    x = torch.rand(2, 8, 5, 6).contiguous(memory_format=CL)
    out = pool(x)
    assert is_channels_last(out)
    torch.testing.assert_close(out, pool(x.contiguous()))


@pytest.mark.parametrize("channels_last", [False, True])
def test_deeplabv3plus_fast_paths_equal_reference_ops_in_training(channels_last):
    """Whole model, train mode: logits and every parameter's gradient as with the textbook graph.

    48 x 64 input: the /16 map is 3 x 4, under every ASPP rate (2, 3, 4), so the depthwise
    centre-tap path runs for rates 4 and (on the 4-wide axis) not for 2 and 3.
    """
    torch.manual_seed(0)
    fmt = CL if channels_last else torch.contiguous_format
    model = create_model("deeplabv3plus", num_classes=2, encoder="resnet18", channels=16, rates=(2, 3, 4), dropout=0.0)
    model = model.to(memory_format=fmt).train()
    x = torch.rand(2, 3, 48, 64).contiguous(memory_format=fmt)
    g = torch.randn(2, 2, 48, 64)
    params = [p for p in model.parameters() if p.requires_grad]

    def run():
        out = model(x)
        return out, _grads(out, params, g)

    with reference_ops():
        expected, expected_grads = run()
    out, grads = run()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # Training-mode BatchNorm amplifies float32 rounding: the textbook graph's own gradients are
    # ~5e-4 (relative, in norm) away from its float64 gradients; the fast paths' are ~5e-5 away
    # from the textbook graph's.
    for got, want in zip(grads, expected_grads, strict=True):
        assert (got - want).norm() <= 1e-3 * want.norm()
    assert out.is_contiguous(memory_format=fmt)


def test_layout_like_restores_nchw_only():
    nchw, cl = torch.rand(1, 2, 3, 4), torch.rand(1, 2, 3, 4).contiguous(memory_format=CL)
    out = layout_like({"logits": cl, "aux": cl}, nchw)
    assert all(t.is_contiguous() and torch.equal(t, cl) for t in out.values())
    assert layout_like(cl, cl) is cl
    assert layout_like(nchw, cl) is nchw


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_concat_conv_interleave_equals_the_slice_and_stack_path(channels_last, monkeypatch):
    """``_PhaseInterleave`` against the slices and stacks that tracing and export still use."""
    from seglab.models import fastpaths

    torch.manual_seed(0)
    fmt = CL if channels_last else torch.contiguous_format
    x = torch.randn(2, 5, 6, 7).contiguous(memory_format=fmt).requires_grad_()
    skip = torch.randn(2, 3, 12, 14).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(4, 8, 3, 3, requires_grad=True)
    got = fastpaths.upsample_concat_conv3x3(x, skip, w)
    monkeypatch.setattr(fastpaths, "_eager_fast", lambda t: False)
    expected = fastpaths.upsample_concat_conv3x3(x, skip, w)
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=fmt)
    g = torch.randn_like(expected)
    torch.testing.assert_close(_grads(got, (x, skip, w), g), _grads(expected, (x, skip, w), g))
