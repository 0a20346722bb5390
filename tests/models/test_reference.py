"""seglab models against the peer implementations they are laid out like, number by number.

The same weights are copied (in registration order) into both; eval-mode outputs must agree.
"""

import pytest
import torch
from model_tester import copy_in_order, randomize_batchnorm

from seglab.models import create_model
from seglab.models.encoders import TorchvisionResNet


def assert_same_outputs(ref, ours, size=(64, 64), key=None):
    """Copy ``ref``'s weights into ``ours`` in registration order (batch-norm statistics
    randomised first); their eval outputs on a random ``1 x 3 x H x W`` input must agree."""
    randomize_batchnorm(ref)
    copy_in_order(ref, ours)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = ref(x)
        torch.testing.assert_close(ours(x), out if key is None else out[key])


def test_unet_resnet18_matches_smp_unet_decoder_features():
    """Same encoder and decoder as smp.Unet; only the head differs (1x1 as in the paper, smp: 3x3)."""
    import segmentation_models_pytorch as smp

    ref = smp.Unet("resnet18", encoder_weights=None, classes=2).eval()
    ours = create_model("unet", num_classes=2, encoder="resnet18").eval()
    randomize_batchnorm(ref)
    copy_in_order(torch.nn.ModuleList([ref.encoder, ref.decoder]), torch.nn.ModuleList([ours.encoder, ours.decoder]))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours.decoder(ours.encoder(x)), ref.decoder(ref.encoder(x)))


def test_deeplabv3_matches_torchvision_deeplabv3_resnet50():
    from torchvision.models.segmentation import deeplabv3_resnet50

    ref = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=False).eval()
    ours = create_model("deeplabv3", num_classes=3, encoder="resnet50", output_stride=8).eval()
    assert_same_outputs(ref, ours, key="out")


def test_dilation_matches_torchvision_replace_stride_with_dilation():
    import torchvision

    for output_stride, flags in ((16, [False, False, True]), (8, [False, True, True])):
        ref = torchvision.models.resnet50(replace_stride_with_dilation=flags)
        ours = TorchvisionResNet("resnet50", output_stride=output_stride)
        ref_convs = [(m.stride, m.dilation, m.padding) for m in ref.modules() if isinstance(m, torch.nn.Conv2d)]
        our_convs = [(m.stride, m.dilation, m.padding) for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
        assert our_convs == ref_convs


def test_first_conv_adapted_from_pretrained_weights(tmp_path):
    """A 1-channel encoder from RGB weights sees a grey image as the RGB encoder sees it in grey."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    rgb = TorchvisionResNet("resnet18", 3, pretrained=str(tmp_path / "r18.pt")).eval()
    grey = TorchvisionResNet("resnet18", 1, pretrained=str(tmp_path / "r18.pt")).eval()
    four = TorchvisionResNet("resnet18", 4, pretrained=str(tmp_path / "r18.pt")).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = rgb(x.expand(-1, 3, -1, -1))[-1]
        torch.testing.assert_close(grey(x)[-1], expected)
        torch.testing.assert_close(four(x.expand(-1, 4, -1, -1))[-1], expected)


def test_adapted_kernels_keep_the_grey_response_for_every_channel_count():
    from seglab.models.encoders import adapt_first_conv_weight

    w = torch.randn(8, 3, 7, 7)
    for n in (1, 2, 3, 4, 6):
        torch.testing.assert_close(adapt_first_conv_weight(w, n).sum(dim=1), w.sum(dim=1))
    assert torch.equal(adapt_first_conv_weight(w, 4)[:, :3], w * 0.75)


# -- references for the models torchvision does not ship: literal transcriptions of the papers'
#    layers on torchvision backbones, weights copied in registration order -------------------------


def _resnet_trunk(name="resnet50", dilation=(False, False, False)):
    """A torchvision ResNet without avgpool and fc: conv1, bn1, relu, maxpool, layer1..layer4."""
    import torchvision

    kwargs = {"replace_stride_with_dilation": list(dilation)} if name == "resnet50" else {}
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    return torch.nn.Sequential(*list(net.children())[:-2])


def _up(t, like):
    return torch.nn.functional.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)


class PaperFCN(torch.nn.Module):
    """Long et al. 2015, Fig. 3, on a ResNet-18: 1x1 ``score_fr`` on the /32 features (their conv7),
    ``score_pool4`` on /16 and ``score_pool3`` on /8; FCN-16s adds the 2x up-sampled coarse scores to
    score_pool4, FCN-8s then adds score_pool3; the fused scores go up to the input. Up-sampling is
    bilinear interpolation (what the paper initialises its deconvolutions to; seglab keeps it fixed)."""

    def __init__(self, variant, num_classes):
        super().__init__()
        self.trunk = _resnet_trunk("resnet18")
        self.score_fr = torch.nn.Conv2d(512, num_classes, 1)
        self.score_pool4 = torch.nn.Conv2d(256, num_classes, 1)
        self.score_pool3 = torch.nn.Conv2d(128, num_classes, 1)
        self.variant = variant

    def forward(self, x):
        stem = self.trunk[:5](x)  # conv1, bn1, relu, maxpool, layer1
        pool3 = self.trunk[5](stem)
        pool4 = self.trunk[6](pool3)
        score = self.score_fr(self.trunk[7](pool4))
        if self.variant in ("16s", "8s"):
            score = _up(score, pool4) + self.score_pool4(pool4)
        if self.variant == "8s":
            score = _up(score, pool3) + self.score_pool3(pool3)
        return _up(score, x)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_fcn_matches_long_et_al_skip_fusion(variant):
    ref = PaperFCN(variant, 3).eval()
    ours = create_model("fcn", num_classes=3, encoder="resnet18", variant=variant).eval()
    randomize_batchnorm(ref)
    scores = [ref.score_fr, ref.score_pool4, ref.score_pool3][: {"32s": 1, "16s": 2, "8s": 3}[variant]]
    copy_in_order(torch.nn.ModuleList([ref.trunk, *scores]), torch.nn.ModuleList([ours.encoder, ours.decoder]))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


class PaperDeepLabV2(torch.nn.Module):
    """Chen et al. 2017 (DeepLab v2), ResNet variant: output stride 8 (layer3 and layer4 dilated 2
    and 4), ASPP-L = four 3x3 classifiers dilated 6, 12, 18, 24 on the same features, summed; the
    scores are bilinearly up-sampled to the input (the CRF is not part of the network)."""

    def __init__(self, num_classes, rates=(6, 12, 18, 24)):
        super().__init__()
        self.trunk = _resnet_trunk("resnet50", (False, True, True))
        self.aspp = torch.nn.ModuleList(torch.nn.Conv2d(2048, num_classes, 3, padding=r, dilation=r) for r in rates)

    def forward(self, x):
        features = self.trunk(x)
        return _up(sum(branch(features) for branch in self.aspp), x)


def test_deeplabv2_matches_the_papers_aspp_l():
    """End to end at 64 x 64 (8 x 8 features: the rates' outer taps all fall in the padding), then
    the ASPP-L alone on 30 x 30 features of a small backbone, where every rate counts."""
    ref = PaperDeepLabV2(3).eval()
    ours = create_model("deeplabv2", num_classes=3, encoder="resnet50", output_stride=8).eval()
    assert_same_outputs(ref, ours)

    small = create_model("deeplabv2", num_classes=3, encoder="timm:test_resnet", output_stride=8).eval()
    aspp_l = torch.nn.ModuleList(torch.nn.Conv2d(96, 3, 3, padding=r, dilation=r) for r in (6, 12, 18, 24))
    copy_in_order(aspp_l, small.decoder)
    f = torch.rand(1, 96, 30, 30)
    with torch.no_grad():
        torch.testing.assert_close(small.heads(small.decoder([f]))["logits"], sum(b(f) for b in aspp_l))


def test_deeplabv3_output_stride_16_matches_torchvision():
    """torchvision's DeepLabV3 + DeepLabHead on a ResNet-50 dilated in layer4 only, ASPP rates
    (6, 12, 18): the paper's output-stride-16 setting (the packaged builder has stride 8 only)."""
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    trunk = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    backbone = IntermediateLayerGetter(trunk, return_layers={"layer4": "out"})
    ref = DeepLabV3(backbone, DeepLabHead(2048, 3, atrous_rates=(6, 12, 18))).eval()
    ours = create_model("deeplabv3", num_classes=3, encoder="resnet50", output_stride=16).eval()
    assert_same_outputs(ref, ours, key="out")

    # the head alone on 20 x 20 features of a small backbone, where rates 6, 12 and 18 all count
    small = create_model("deeplabv3", num_classes=3, encoder="timm:test_resnet", output_stride=16).eval()
    head = DeepLabHead(96, 3, atrous_rates=(6, 12, 18)).eval()
    randomize_batchnorm(head)
    copy_in_order(head, torch.nn.ModuleList([small.decoder, small.heads]))
    f = torch.rand(1, 96, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(small.heads(small.decoder([f]))["logits"], head(f))


def _conv_bn_relu(cin, cout, k=3, dilation=1, separable=False):
    """Chen et al. 2018: a 3x3 conv, or the atrous separable one (depthwise 3x3, then 1x1), BN, ReLU."""
    pad = dilation * (k - 1) // 2
    if separable:
        conv = torch.nn.Sequential(
            torch.nn.Conv2d(cin, cin, k, padding=pad, dilation=dilation, groups=cin, bias=False),
            torch.nn.Conv2d(cin, cout, 1, bias=False),
        )
    else:
        conv = torch.nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False)
    return torch.nn.Sequential(conv, torch.nn.BatchNorm2d(cout), torch.nn.ReLU())


class PaperDeepLabV3PlusHead(torch.nn.Module):
    """Chen et al. 2018 (DeepLab v3+), Fig. 2 and Sec. 4.1: torchvision's DeepLab v3 ``ASPP`` on the
    deep features (its 3x3 branches atrous separable when ``separable``: depthwise 3x3, then 1x1),
    up-sampled bilinearly to the /4 features, which a 1x1 conv reduces to 48 channels;
    concatenated, two 3x3 convs, a 1x1 classifier."""

    def __init__(self, deep_channels, low_channels, num_classes, channels, separable, rates=(6, 12, 18)):
        from torchvision.models.segmentation.deeplabv3 import ASPP

        super().__init__()
        self.aspp = ASPP(deep_channels, rates, channels)
        if separable:
            for branch, rate in zip(self.aspp.convs[1:4], rates, strict=True):
                branch[0] = _conv_bn_relu(deep_channels, channels, dilation=rate, separable=True)[0]
        self.low = _conv_bn_relu(low_channels, 48, k=1)
        self.fuse = torch.nn.Sequential(
            _conv_bn_relu(channels + 48, channels, separable=separable),
            _conv_bn_relu(channels, channels, separable=separable),
        )
        self.classifier = torch.nn.Conv2d(channels, num_classes, 1)

    def forward(self, low, deep):
        return self.classifier(self.fuse(torch.cat([_up(self.aspp(deep), low), self.low(low)], dim=1)))


class PaperDeepLabV3Plus(torch.nn.Module):
    """The head on a ResNet-50 at output stride 16 (layer1 gives the /4 features), then bilinear
    up-sampling to the input."""

    def __init__(self, num_classes, channels, separable):
        super().__init__()
        self.trunk = _resnet_trunk("resnet50", (False, False, True))
        self.head = PaperDeepLabV3PlusHead(2048, 256, num_classes, channels, separable)

    def forward(self, x):
        low = self.trunk[:5](x)  # through layer1: /4
        return _up(self.head(low, self.trunk[5:](low)), x)


@pytest.mark.parametrize("separable", [False, True])
def test_deeplabv3plus_matches_the_papers_decoder(separable):
    """End to end at 64 x 96, then the head alone on 20 x 20 deep features of a small backbone
    (at 4 x 6 the 3x3 branches see their centre tap only)."""
    ref = PaperDeepLabV3Plus(3, 32, separable).eval()
    ours = create_model(
        "deeplabv3plus", num_classes=3, encoder="resnet50", output_stride=16, channels=32, separable=separable
    ).eval()
    assert_same_outputs(ref, ours, (64, 96))

    small = create_model("deeplabv3plus", num_classes=3, encoder="timm:test_resnet", output_stride=16, channels=32,
                         separable=separable).eval()
    head = PaperDeepLabV3PlusHead(96, 32, 3, 32, separable).eval()
    randomize_batchnorm(head)
    copy_in_order(head, torch.nn.ModuleList([small.decoder, small.heads]))
    low, deep = torch.rand(1, 32, 80, 80), torch.rand(1, 96, 20, 20)
    with torch.no_grad():
        got = small.heads(small.decoder([None, low, None, None, deep]))["logits"]
        torch.testing.assert_close(got, head(low, deep))


class PaperEncoderDecoder(torch.nn.Module):
    """SegNet's layout (Badrinarayanan et al. 2017) as seglab's ``encdec`` sizes it: per level two
    3x3 conv-BN-ReLU, 2x2 max-pooling that remembers its argmax; the decoder goes back level by
    level without skips, each step up-sampling (``maxunpool``: the values return to the positions
    the matching encoder pool took them from, zeros elsewhere; a 1x1 conv first changes the channel
    count) then two 3x3 conv-BN-ReLU; a 1x1 classifier."""

    def __init__(self, channels, num_classes, upsample):
        super().__init__()
        nn = torch.nn

        def stage(cin, cout):
            return nn.Sequential(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))

        self.upsample = upsample
        self.encoder = nn.ModuleList(stage(cin, cout) for cin, cout in zip([3, *channels[:-1]], channels, strict=True))
        ups = []
        for cin, cout in zip(channels[:0:-1], channels[-2::-1], strict=True):
            if upsample in ("maxunpool", "nearest"):
                ups.append(nn.Conv2d(cin, cout, 1, bias=False))
            elif upsample == "transposed":
                ups.append(nn.ConvTranspose2d(cin, cout, 2, stride=2))
            else:  # resize_conv: bilinear 2x, then a 3x3 conv
                ups.append(nn.Conv2d(cin, cout, 3, padding=1))
        self.ups = nn.ModuleList(ups)
        self.decoder = nn.ModuleList(stage(c, c) for c in channels[-2::-1])
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x):
        f = torch.nn.functional
        x = self.encoder[0](x)
        indices = []
        for stage in self.encoder[1:]:
            x, idx = f.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
            x = stage(x)
        for up, stage, idx in zip(self.ups, self.decoder, indices[::-1], strict=True):
            if self.upsample == "maxunpool":
                x = f.max_unpool2d(up(x), idx, 2, 2)
            elif self.upsample == "nearest":
                x = f.interpolate(up(x), scale_factor=2.0, mode="nearest")
            elif self.upsample == "transposed":
                x = up(x)
            else:
                x = up(f.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
            x = stage(x)
        return self.classifier(x)


@pytest.mark.parametrize("upsample", ["maxunpool", "nearest", "transposed", "resize_conv"])
def test_encdec_matches_a_segnet_transcription(upsample):
    ref = PaperEncoderDecoder([4, 8, 16, 32], 3, upsample).eval()
    ours = create_model("encdec", num_classes=3, depth=3, base_channels=4, upsample=upsample).eval()
    assert_same_outputs(ref, ours, (64, 48))
