"""seglab train --task panoptic: one network with the instance and class heads, panoptic validation,
checkpoint -> predict -> evaluate; bad input one line each."""

import pytest
import torch

from seglab.cli import main
from seglab.config import resolve_config
from seglab.engine.panoptic_module import class_weights
from seglab.engine.trainer import plan_run, train
from seglab.errors import ConfigError, DataError
from seglab.spec.checkpoint import load_checkpoint
from seglab.spec.recipes import decoder_input, make_recipe


@pytest.fixture(scope="module")
def panoptic_data(tmp_path_factory):
    from seglab.data.synthetic_panoptic import write_panoptic_dataset

    root = tmp_path_factory.mktemp("panoptic")
    write_panoptic_dataset(root / "train", n=3, size=96, seed=1)  # every type present
    write_panoptic_dataset(root / "val", n=2, size=96, seed=2)
    return root


def test_recipe_and_decoder_input():
    recipe = make_recipe("panoptic", "three_class", 7)
    assert recipe.aux_heads == {"classes": 7} and recipe.targets == ("three_class", "classes")
    out = {"logits": torch.randn(2, 3, 5, 5), "classes": torch.randn(2, 7, 5, 5)}
    stack = decoder_input(out, recipe)
    assert stack.shape == (2, 10, 5, 5)
    assert torch.allclose(stack[:, 3:].sum(1), torch.ones(2, 5, 5)) and torch.allclose(stack[:, :3].sum(1), torch.ones(2, 5, 5))
    with pytest.raises(ConfigError, match="three_class instance head"):
        make_recipe("panoptic", "distance", 7)


def test_class_weights():
    assert class_weights(torch.tensor([900, 100, 0, 25]).numpy()) == [pytest.approx(1 / 3, rel=1e-3), 1.0, 1.0, 2.0]


def test_train_val_classes_disagree(panoptic_data, tmp_path):
    import shutil

    val = tmp_path / "val"
    shutil.copytree(panoptic_data / "val", val)
    text = (val / "classes.yaml").read_text().replace("lymphocyte", "immune")
    (val / "classes.yaml").write_text(text)
    config = resolve_config(None, {"task": "panoptic", "data": str(panoptic_data / "train"), "val": str(val),
                                   "out": str(tmp_path / "run"), "max_steps": 1, "workers": 0})
    with pytest.raises(DataError, match="val/classes.yaml: disagrees with .*classes.yaml at class 4"):
        plan_run(config)


def test_train_predict_evaluate(panoptic_data, tmp_path, capsys):
    run = tmp_path / "run"
    config = resolve_config(None, {
        "task": "panoptic", "data": str(panoptic_data / "train"), "val": str(panoptic_data / "val"), "out": str(run),
        "max_steps": 3, "model_kwargs": {"depth": 2, "base_channels": 4}, "batch_size": 2, "patch": 32,
        "patches_per_image": 1, "workers": 0, "overlays": 1})
    result = train(config, plain_log=True)
    assert result.monitor == "val/panoptic_pq" and 0.0 <= result.best_score <= 1.0
    meta = load_checkpoint(run / "best.ckpt")["seglab"]
    assert meta["task"] == "panoptic" and meta["model"]["kwargs"]["aux_heads"] == {"classes": 7}
    assert [c["name"] for c in meta["panoptic"]["classes"]][3:] == ["tumour", "lymphocyte", "stromal", "epithelial"]
    assert len(meta["panoptic"]["class_weights"]) == 7
    assert meta["decoder"]["calibration"]["option"] == "h"  # chosen on the instance channels
    metrics = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/mpq_plus" in metrics and "val/pq_stuff" in metrics
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run / "best.ckpt"), "--input", str(panoptic_data / "val" / "images"),
                 "--output", str(pred)]) == 0
    assert main(["evaluate", "--task", "panoptic", "--pred", str(pred), "--gt", str(panoptic_data / "val")]) == 0
    assert "mPQ+ (CoNIC" in capsys.readouterr().out


def test_bad_input_one_line(panoptic_data, tmp_path, capsys):
    from seglab.data.synthetic import write_synthetic_dataset

    plain = tmp_path / "plain"
    write_synthetic_dataset(plain, n=2, size=48, seed=0)
    args = ["train", "--task", "panoptic", "--out", str(tmp_path / "r"), "--max-steps", "1", "--workers", "0"]
    assert main([*args, "--data", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain/classes.yaml: file not found" in err
    assert main([*args, "--data", str(panoptic_data / "train"), "--method", "distance"]) == 2
    assert "the panoptic task trains the three_class instance head" in capsys.readouterr().err
