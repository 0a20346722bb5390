"""The checkpoint records the training data's µm/px; older checkpoints read as unknown."""

import pytest
import torch

from seglab.errors import DataError
from seglab.models import create_model
from seglab.spec.checkpoint import load_checkpoint, make_meta, save_checkpoint


def _meta(**kw):
    kwargs = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}
    return make_meta(task="instance", model_name="unet", model_kwargs=kwargs, preprocessing={"in_channels": 3},
                     decoder={"name": "three_class_watershed", "kwargs": {}}, **kw), create_model("unet", **kwargs)


def test_mpp_round_trips_and_old_checkpoints_read_unknown(tmp_path):
    meta, model = _meta(mpp=0.25)
    save_checkpoint(tmp_path / "a.ckpt", model, meta)
    assert load_checkpoint(tmp_path / "a.ckpt")["seglab"]["mpp"] == 0.25
    meta, model = _meta()
    assert meta["mpp"] is None
    del meta["mpp"]  # a checkpoint written before µm/px was recorded
    save_checkpoint(tmp_path / "old.ckpt", model, meta)
    assert load_checkpoint(tmp_path / "old.ckpt")["seglab"]["mpp"] is None


@pytest.mark.parametrize("bad", [-0.5, 0, "0.25", True, float("inf")])
def test_a_bad_recorded_mpp_is_one_line(tmp_path, bad):
    meta, model = _meta()
    meta["mpp"] = bad
    torch.save({"state_dict": {}, "seglab": meta}, tmp_path / "bad.ckpt")
    with pytest.raises(DataError, match="mpp must be a positive number"):
        load_checkpoint(tmp_path / "bad.ckpt")
