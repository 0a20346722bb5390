"""seglab models against the peer implementations they are laid out like, number by number.

The same weights are copied (in registration order) into both; eval-mode outputs must agree.
"""

import torch
from model_tester import copy_in_order, randomize_batchnorm

from seglab.models import create_model
from seglab.models.encoders import TorchvisionResNet


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
    randomize_batchnorm(ref)
    copy_in_order(ref, ours)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x)["out"])


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
