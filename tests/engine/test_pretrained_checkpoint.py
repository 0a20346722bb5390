"""A run that starts from pretrained weights writes a checkpoint that predicts offline and
normalises images as the backbone learnt them."""

import numpy as np
import pytest
import torchvision
import torchvision.models._api

from seglab.config import resolve_config
from seglab.engine.trainer import train
from seglab.spec.checkpoint import load_checkpoint

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _refuse(*args, **kwargs):
    raise AssertionError(f"tried to download {args[:1]}")


@pytest.fixture
def fake_download(monkeypatch):
    """torchvision's weights download returns a random ResNet-18 and counts the calls."""
    calls = []

    def fake(url, *args, **kwargs):
        calls.append(url)
        return torchvision.models.resnet18().state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake)
    return calls


def test_pretrained_run_predicts_without_download(tiny, tiny_data, tmp_path, monkeypatch, fake_download, capsys):
    from seglab.inference import Predictor

    values = {**tiny, "model_kwargs": {"decoder_channels": [8, 8, 8, 8, 8], "pretrained": True}, "encoder": "resnet18",
              "data": str(tiny_data), "out": str(tmp_path / "run"), "max_steps": 1, "overlays": 0,
              "calibrate": False, "normalize": "dtype"}
    train(resolve_config(None, values), plain_log=True)
    assert len(fake_download) == 1  # training started from the (fake) ImageNet weights
    out = capsys.readouterr().out
    assert "recipe: normalize: mean 0.485/0.456/0.406, std 0.229/0.224/0.225 of the pretrained backbone " in out

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", _refuse)
    ckpt = load_checkpoint(tmp_path / "run" / "best.ckpt")
    meta = ckpt["seglab"]
    assert meta["model"]["kwargs"]["pretrained"] is False and meta["model"]["pretrained_weights"] is True
    assert meta["preprocessing"]["mean"] == IMAGENET_MEAN and meta["preprocessing"]["std"] == IMAGENET_STD
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.ckpt", tile=32)
    image = np.zeros((40, 40, 3), np.uint8)
    assert predictor.predict(image)["instances"].shape == (40, 40)

