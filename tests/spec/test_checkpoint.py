"""The checkpoint format: a model recorded with pretrained weights rebuilds without downloading,
and a decoder tuned for an older marker rule keeps decoding as it did."""

import torch
import torchvision.models._api

from seglab.models import create_model
from seglab.spec.checkpoint import build_model, load_checkpoint, make_meta, save_checkpoint

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _refuse(*args, **kwargs):
    raise AssertionError(f"tried to download {args[:1]}")


def test_checkpoint_recording_pretrained_weights_builds_offline(tmp_path, monkeypatch):
    """Checkpoints written before the offline rebuild record ``pretrained: True`` in the kwargs."""
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", _refuse)
    kwargs = {"in_channels": 3, "num_classes": 3, "encoder": "resnet18", "pretrained": True}
    model = create_model("unet", **{**kwargs, "pretrained": False})  # the architecture the weights fit
    meta = make_meta(task="instance", model_name="unet", model_kwargs=kwargs, method="three_class",
                     preprocessing={"in_channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
                     decoder={"name": "three_class_watershed", "kwargs": {}})
    assert meta["model"] == {"name": "unet", "kwargs": {**kwargs, "pretrained": False}, "pretrained_weights": True}
    meta["model"] = {"name": "unet", "kwargs": kwargs}  # as an older seglab wrote it
    save_checkpoint(tmp_path / "old.ckpt", model, meta)
    rebuilt = build_model(load_checkpoint(tmp_path / "old.ckpt"))
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_checkpoint_calibrated_for_threshold_markers_keeps_them(tmp_path):
    """A checkpoint tuned for the old marker rule (interior_threshold, no markers) decodes as it did."""
    model = create_model("unet", in_channels=3, num_classes=3, depth=2, base_channels=4)
    for kwargs, calibration, expected in (
        ({"interior_threshold": 0.95}, {"option": "interior_threshold", "value": 0.95}, "threshold"),
        ({"min_size": 5}, None, None),  # new checkpoints take the default (h-maxima)
        ({"interior_threshold": 0.9, "markers": "hmaxima"}, None, "hmaxima"),
    ):
        decoder = {"name": "three_class_watershed", "kwargs": dict(kwargs)}
        if calibration:
            decoder["calibration"] = calibration
        meta = make_meta(task="instance", method="three_class", model_name="unet",
                         model_kwargs={"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4},
                         preprocessing={"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}, decoder=decoder)
        save_checkpoint(tmp_path / "m.ckpt", model, meta)
        assert load_checkpoint(tmp_path / "m.ckpt")["seglab"]["decoder"]["kwargs"].get("markers") == expected
