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


# -- early stopping, EMA, encoder learning rate --------------------------------------------------
def _run(tiny, data, out, **kw):
    from seglab.engine.trainer import train

    return train(_config(tiny, data, out, calibrate=False, overlays=0, **kw), plain_log=True)


def test_early_stopping_ends_a_run_whose_score_stops_improving(tiny, tiny_data, tmp_path, monkeypatch):
    """4 training images x 2 patches, 2 per batch: 4 steps per epoch, a validation after each."""
    import seglab.engine.module as module_lib

    scores = iter([0.5] * 100)
    monkeypatch.setattr(module_lib, "log_instance_scores", lambda m, records: m.log("val/aji", next(scores)))
    flat = _run(tiny, tiny_data, tmp_path / "flat", max_steps=100, early_stop_patience=2)
    assert flat.steps == 12  # epoch 0 sets the best; epochs 1 and 2 do not beat it: stop
    scores = iter(0.1 * i for i in range(100))  # improves at every validation
    rising = _run(tiny, tiny_data, tmp_path / "rising", max_steps=16, early_stop_patience=1)
    assert rising.steps == 16


def _record_weights(monkeypatch):
    from seglab.engine.module import SegmentationModule

    steps = []
    monkeypatch.setattr(SegmentationModule, "on_train_batch_end", lambda self, *a: steps.append(
        {k: v.detach().clone().double() for k, v in self.model.state_dict().items()}))
    return steps


def test_ema_checkpoint_holds_the_hand_computed_average(tiny, tiny_data, tmp_path, monkeypatch):
    from seglab.spec.checkpoint import build_model, load_checkpoint

    steps = _record_weights(monkeypatch)
    decay = 0.5
    result = _run(tiny, tiny_data, tmp_path / "r", max_steps=3, ema_decay=decay)
    assert result.steps == 3 and len(steps) == 3
    w1, w2, w3 = steps
    ema = {}
    for k in w1:  # bias-corrected: ema_t = ema_{t-1} + (w_t - ema_{t-1}) (1 - d) / (1 - d^t)
        e2 = w1[k] + (w2[k] - w1[k]) * (1 - decay) / (1 - decay**2)
        ema[k] = e2 + (w3[k] - e2) * (1 - decay) / (1 - decay**3)
        torch.testing.assert_close(ema[k], (w1[k] * decay**2 + w2[k] * decay + w3[k]) / (1 + decay + decay**2))
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = load_checkpoint(tmp_path / "r" / name)
        assert ckpt["global_step"] == 3
        model = build_model(ckpt)  # what seglab predict runs
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(v.double(), ema[k], rtol=0, atol=1e-6)
            else:  # batch counts are copied, not averaged
                assert torch.equal(v.double(), w3[k]), k
        training = ckpt["callbacks"]["WeightEMA"]["training_weights"]
        assert all(torch.equal(training[k].double(), w3[k]) for k in w3)  # --resume trains on these
    moved = [k for k in w3 if w3[k].is_floating_point() and not torch.allclose(w3[k], ema[k])]
    assert len(moved) > len(w3) // 2  # the average is not the last weights


def test_ema_run_resumes_exactly(tiny, tiny_data, tmp_path):
    """2 steps, then resumed to 4, equals 4 steps (constant rate: the budgets' schedules agree)."""
    values = {"patches_per_image": 1, "schedule": "constant", "ema_decay": 0.7}  # 2 steps per epoch
    _run(tiny, tiny_data, tmp_path / "whole", max_steps=4, **values)
    _run(tiny, tiny_data, tmp_path / "cut", max_steps=2, **values)
    from seglab.engine.trainer import train

    train(_config(tiny, tiny_data, tmp_path / "cut", max_steps=4, calibrate=False, overlays=0, **values),
          resume=True, plain_log=True)
    whole, again = (torch.load(tmp_path / d / "last.ckpt", weights_only=True) for d in ("whole", "cut"))
    assert whole["global_step"] == again["global_step"] == 4
    for key in ("state_dict", "training_weights"):
        a = whole["state_dict"] if key == "state_dict" else whole["callbacks"]["WeightEMA"][key]
        b = again["state_dict"] if key == "state_dict" else again["callbacks"]["WeightEMA"][key]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key


def test_encoder_lr_scale_zero_freezes_the_encoder(tiny, tiny_data, tmp_path, monkeypatch):
    from seglab.engine.module import SegmentationModule

    before = {}
    monkeypatch.setattr(SegmentationModule, "on_train_start", lambda self: before.update(
        {k: v.detach().clone() for k, v in self.model.named_parameters()}))
    _run(tiny, tiny_data, tmp_path / "r", max_steps=3, encoder_lr_scale=0.0)
    after = {k.removeprefix("model."): v for k, v in torch.load(tmp_path / "r" / "last.ckpt", weights_only=True)["state_dict"].items()}
    encoder = [k for k in before if k.startswith("encoder.")]
    rest = [k for k in before if not k.startswith("encoder.")]
    assert encoder and rest
    assert all(torch.equal(after[k], before[k]) for k in encoder)
    assert all(not torch.equal(after[k], before[k]) for k in rest if k.endswith("weight"))


def test_encoder_lr_scale_gives_the_encoder_groups_a_tenth_of_the_rate(tiny, tiny_data, tmp_path, monkeypatch):
    from seglab.engine.module import SegmentationModule

    seen = []

    def record(self, batch, batch_idx):
        groups = self.trainer.optimizers[0].param_groups
        seen.append({g["name"]: g["lr"] for g in groups})
        encoder = {id(p) for p in self.model.encoder.parameters()}
        assert all((id(p) in encoder) == g["name"].startswith("encoder") for g in groups for p in g["params"])

    monkeypatch.setattr(SegmentationModule, "on_train_batch_start", record)
    _run(tiny, tiny_data, tmp_path / "r", max_steps=3, encoder_lr_scale=0.1, lr=1e-3)
    assert len(seen) == 3 and len({s["decay"] for s in seen}) > 1  # the schedule moves
    for lrs in seen:
        assert set(lrs) == {"decay", "no_decay", "encoder_decay", "encoder_no_decay"}
        assert lrs["encoder_decay"] == pytest.approx(0.1 * lrs["decay"], rel=1e-12)
        assert lrs["encoder_no_decay"] == pytest.approx(0.1 * lrs["no_decay"], rel=1e-12)
    assert seen[0]["decay"] == pytest.approx(1e-4)  # onecycle starts at 0.1 x lr


def test_cli_flags_reach_the_config_and_bad_values_name_the_flag(tiny_data, tmp_path, capsys):
    from seglab.cli import build_parser

    args = build_parser().parse_args(["train", "--out", "r", "--ema", "0.99", "--early-stop", "3", "--encoder-lr-scale", "0"])
    assert (args.ema_decay, args.early_stop_patience, args.encoder_lr_scale) == (0.99, 3, 0.0)
    for flag, value, problem in (("--ema", "1", "--ema-decay: must lie in (0, 1)"),
                                 ("--early-stop", "0", "--early-stop-patience: must be >= 1"),
                                 ("--encoder-lr-scale", "-1", "--encoder-lr-scale: must be a finite number >= 0")):
        status = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), flag, value])
        err = capsys.readouterr().err.strip()
        assert status == 2 and err.startswith(f"seglab: error: {problem}") and "\n" not in err
