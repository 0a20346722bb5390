import pytest
import torch
from model_tester import ModelTester

from seglab.errors import ConfigError
from seglab.models import create_model


class TestUNetClassic(ModelTester):
    name = "unet"
    kwargs = {"depth": 3, "base_channels": 4}


class TestUNetResidualTransposed(ModelTester):
    name = "unet"
    kwargs = {"depth": 2, "base_channels": 4, "residual": True, "upsample": "transposed"}


class TestUNetMaxUnpool(ModelTester):
    name = "unet"
    kwargs = {"depth": 2, "base_channels": 4, "upsample": "maxunpool"}


class TestUNetTimmBackbone(ModelTester):
    name = "unet"
    kwargs = {"encoder": "timm:test_resnet", "upsample": "resize_conv", "decoder_channels": [16, 16, 8, 8, 8]}


@pytest.mark.slow
class TestUNetResNet18(ModelTester):
    name = "unet"
    kwargs = {"encoder": "resnet18", "decoder_channels": [32, 16, 16, 8, 8]}


class TestUNetDeepSupervision(ModelTester):
    name = "unet"
    kwargs = {"depth": 3, "base_channels": 4, "deep_supervision": True}

    def test_output_keeps_input_size(self) -> None:  # eval: a plain tensor; training: a dict
        model = self.build()
        x = torch.rand(2, 3, 70, 90)
        out = model.train()(x)
        assert sorted(out) == ["deep", "logits"]
        assert [t.shape for t in out["deep"]] == [(2, 3, 70, 90)] * 2
        assert model.eval()(x).shape == (2, 3, 70, 90)


def test_maxunpool_refuses_a_backbone():
    with pytest.raises(ConfigError, match="maxunpool"):
        create_model("unet", num_classes=2, encoder="timm:test_resnet", upsample="maxunpool")


def test_fast_decoder_path_equals_textbook_path_in_both_memory_formats():
    from seglab.models.fastpaths import reference_ops

    model = create_model("unet", num_classes=2, depth=3, base_channels=4).eval()
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        with reference_ops():
            expected = model(x)
        torch.testing.assert_close(model(x), expected)
        model_cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model_cl(x.contiguous(memory_format=torch.channels_last)), expected)
