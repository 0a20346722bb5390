import pytest
from model_tester import ModelTester


@pytest.mark.parametrize("upsample", ["nearest", "maxunpool", "transposed", "resize_conv"])
class TestEncDec(ModelTester):
    name = "encdec"

    @pytest.fixture(autouse=True)
    def _upsample(self, upsample):
        self.kwargs = {"depth": 3, "base_channels": 4, "upsample": upsample}
