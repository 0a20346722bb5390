"""load_predictor: a checkpoint comes back as the predictor it needs; each predictor class's
from_checkpoint refuses the other kind of checkpoint in one line that names load_predictor."""

import pytest
import torch

from seglab.errors import DataError
from seglab.inference import Predictor, load_predictor
from seglab.inference.detection import DetectionPredictor
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

PRE = {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
UNET = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}
MASKRCNN = {"in_channels": 3, "num_classes": 2, "backbone": "resnet18_fpn", "rois_per_image": 32,
            "representation_size": 32, "mask_channels": 8}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("load")
    save_checkpoint(root / "unet.ckpt", create_model("unet", **UNET), make_meta(
        task="instance", method="three_class", model_name="unet", model_kwargs=UNET, preprocessing=PRE,
        decoder={"name": "three_class_watershed", "kwargs": {}}))
    save_checkpoint(root / "maskrcnn.ckpt", create_model("maskrcnn", **MASKRCNN), make_meta(
        task="instance", method="maskrcnn", model_name="maskrcnn", model_kwargs=MASKRCNN, preprocessing=PRE,
        decoder={"name": "maskrcnn", "kwargs": {}}))
    return root / "unet.ckpt", root / "maskrcnn.ckpt"


def test_load_predictor_picks_the_class(checkpoints):
    unet, maskrcnn = checkpoints
    assert type(load_predictor(unet, tile=32)) is Predictor
    detector = load_predictor(maskrcnn, tile=32)
    assert type(detector) is DetectionPredictor and detector.tile == 32
    assert type(DetectionPredictor.from_checkpoint(maskrcnn)) is DetectionPredictor


def test_from_checkpoint_refuses_the_other_kind_in_one_line(checkpoints):
    unet, maskrcnn = checkpoints
    for cls, path in ((Predictor, maskrcnn), (DetectionPredictor, unet)):
        with pytest.raises(DataError, match="load_predictor") as err:
            cls.from_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
