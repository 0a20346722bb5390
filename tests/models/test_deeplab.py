import pytest
import torch
from model_tester import ModelTester


class TestDeepLabV2(ModelTester):
    name = "deeplabv2"
    kwargs = {"encoder": "timm:test_resnet"}


@pytest.mark.parametrize("output_stride", [8, 16])
class TestDeepLabV3(ModelTester):
    name = "deeplabv3"

    @pytest.fixture(autouse=True)
    def _os(self, output_stride):
        self.kwargs = {"encoder": "resnet18", "output_stride": output_stride, "channels": 16}


class TestDeepLabV3Plus(ModelTester):
    name = "deeplabv3plus"
    kwargs = {"encoder": "resnet18", "channels": 16}


class TestDeepLabV3PlusTimm(ModelTester):
    name = "deeplabv3plus"
    kwargs = {"encoder": "timm:test_resnet", "channels": 16, "separable": False, "output_stride": 8}


def test_deeplabv2_sums_one_classifier_per_rate():
    model = TestDeepLabV2().build(output_stride=8).eval()
    branches = model.decoder.branches
    assert [b.dilation for b in branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    f = torch.rand(1, branches[0].in_channels, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(model.decoder([f]), sum(b(f) for b in branches))
