import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
class TestFCN(ModelTester):
    name = "fcn"

    @pytest.fixture(autouse=True)
    def _variant(self, variant):
        self.kwargs = {"variant": variant, "base_channels": 4}


class TestFCNBackbone(ModelTester):
    name = "fcn"
    kwargs = {"encoder": "timm:test_efficientnet", "variant": "16s"}


def test_fcn8s_fuses_pool3_pool4_scores_by_hand():
    """logits = up(up(up(score32) + score16) + score8): Long et al. 2015, Fig. 3."""
    model = TestFCN().build(variant="8s", base_channels=4).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.encoder(x)  # reductions 1, 2, 4, 8, 16, 32
        s32, s16, s8 = (conv(feats[i]) for conv, i in zip(model.decoder.scores, (5, 4, 3), strict=True))

        def up(t, size):
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        expected = up(up(up(s32, (4, 4)) + s16, (8, 8)) + s8, (64, 64))
        torch.testing.assert_close(model(x), expected)
