"""Settings reachable from the config: loss options, foreground sampling, early stopping, EMA,
encoder learning rate. Each is checked by the numbers it must produce."""

import pytest
import torch
import torch.nn.functional as F

from seglab.cli import main
from seglab.config import resolve_config
from seglab.engine.trainer import prepare


def _config(tiny, data, out, **kw):
    return resolve_config(None, {**tiny, "data": str(data), "out": str(out), **kw})


# -- loss_kwargs ---------------------------------------------------------------------------------
def test_loss_kwargs_class_weights_reach_the_ce_term(tiny, tiny_data, tmp_path):
    weight = [0.2, 1.0, 3.0]  # background, interior, boundary
    config = _config(tiny, tiny_data, tmp_path / "r", loss="ce+dice", loss_kwargs={"ce": {"weight": weight}, "dice": {"smooth": 1.0}})
    module, _, _ = prepare(config)
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    target[0, 0] = 255
    ce, dice = module.loss.losses
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=255)
    torch.testing.assert_close(ce(logits, target), expected)
    assert dice.weight is None and dice.smooth == 1.0
    assert module.loss(logits, target).item() == pytest.approx(expected.item() + dice(logits, target).item(), rel=1e-6)


def test_bad_loss_kwargs_are_one_line_naming_the_valid_keys(tiny_data, tmp_path, capsys):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("loss: focal\nloss_kwargs: {gama: 3}\nmodel_kwargs: {depth: 2, base_channels: 4}\n")
    status = main(["train", "--config", str(yaml), "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert err == "seglab: error: loss_kwargs gama not accepted by 'focal'; valid: term names focal; options alpha, eps, gamma, weight"


def test_loss_weight_needs_one_entry_per_class(tiny, tiny_data, tmp_path):
    from seglab.errors import ConfigError

    config = _config(tiny, tiny_data, tmp_path / "r", loss_kwargs={"weight": [1.0, 2.0]})
    with pytest.raises(ConfigError, match=r"weight has 2 entries, the model predicts 3 classes \(background, "):
        prepare(config)


# -- foreground_sampling -------------------------------------------------------------------------
def test_foreground_sampling_reaches_the_training_patches_only(tiny, tiny_data, tmp_path, capsys):
    _, data, _ = prepare(_config(tiny, tiny_data, tmp_path / "r", foreground_sampling=0.33))
    assert data._dataset(data.train_samples, train=True).foreground_sampling == 0.33
    assert data._dataset(data.val_samples, train=False).foreground_sampling == 0.0
    status = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--foreground-sampling", "1.5"])
    assert status == 2 and capsys.readouterr().err.strip() == "seglab: error: --foreground-sampling: must lie in [0, 1], got 1.5"
