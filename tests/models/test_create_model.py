import pytest

from seglab.errors import ConfigError
from seglab.models import MODELS, create_model, model_kwargs


def test_names():
    assert list(MODELS) == ["allconv", "encdec", "fcn", "unet", "deeplabv2", "deeplabv3", "deeplabv3plus"]


def test_unknown_model_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown model 'unet3d'; valid choices: allconv, deeplabv2"):
        create_model("unet3d", num_classes=2)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"no option 'dpeth'; valid options: .*base_channels.*depth"):
        create_model("unet", num_classes=2, dpeth=3)


def test_unknown_encoder():
    with pytest.raises(ConfigError, match="unknown encoder 'resnet7'"):
        create_model("unet", num_classes=2, encoder="resnet7")


def test_bad_output_stride():
    with pytest.raises(ConfigError, match="output_stride"):
        create_model("deeplabv3", num_classes=2, encoder="timm:test_resnet", output_stride=4)


def test_every_model_takes_the_common_options():
    for name in MODELS:
        assert {"in_channels", "num_classes", "aux_heads"} <= set(model_kwargs(name))
