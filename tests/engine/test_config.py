"""Config resolution: defaults <- YAML <- flags, and one-line errors for bad keys and values."""

import re

import pytest

from seglab.config import TrainConfig, resolve_config, save_config
from seglab.errors import ConfigError, DataError


def test_flags_override_yaml_and_defaults(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: deeplabv3plus\nbatch_size: 4\npatch: 128\n")
    config = resolve_config(cfg, {"data": "d", "out": "o", "patch": 64, "lr": None})
    assert (config.model, config.batch_size, config.patch) == ("deeplabv3plus", 4, 64)
    assert config.lr == TrainConfig.model_fields["lr"].default  # None flags do not override


def test_saved_config_round_trips(tmp_path):
    config = resolve_config(None, {"data": "d", "out": "o", "minutes": 2.5, "model_kwargs": {"depth": 3}})
    save_config(config, tmp_path / "config.yaml")
    assert resolve_config(tmp_path / "config.yaml") == config


def test_unknown_key_lists_valid_keys(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: d\nout: o\nbatchsize: 4\n")
    with pytest.raises(ConfigError) as err:
        resolve_config(cfg)
    message = str(err.value)
    assert "\n" not in message and str(cfg) in message and "'batchsize'" in message
    assert "batch_size" in message and "patches_per_image" in message


def test_bad_values_and_files_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--patch: must be >= 16, got 8"):
        resolve_config(None, {"data": "d", "out": "o", "patch": 8})
    with pytest.raises(ConfigError, match="task"):
        resolve_config(None, {"data": "d", "out": "o", "task": "depth"})
    with pytest.raises(DataError, match="config file not found"):
        resolve_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(DataError, match="invalid YAML"):
        resolve_config(broken)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("workers", -1, "--workers: must be >= 0"), ("num_classes", 1, "--num-classes: must be >= 2"),
     ("devices", 0, "--devices"), ("warmup", 1.5, "--warmup: must lie in [0, 1)")],
)
def test_out_of_range_values(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        resolve_config(None, {"data": "d", "out": "o", key: value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("lr", float("nan"), "must be a finite number > 0, got nan"), ("lr", -1.0, "must be a finite number > 0"),
     ("lr", 0.0, "must be a finite number > 0"), ("weight_decay", -0.1, "must be a finite number >= 0"),
     ("seed", -1, r"must lie in \[0, 2\*\*32 - 1\], got -1"), ("minutes", float("inf"), "must be a finite number > 0")],
)
def test_bad_values_name_the_flag_or_the_yaml_file(tmp_path, key, value, message):
    """The same bad value is blamed on its flag when it came from a flag, on the file from YAML."""
    flag = "--" + key.replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{flag}: {message}"):
        resolve_config(None, {"data": "d", "out": "o", key: value})
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: d\nout: o\n{key}: {value}\n".replace("nan", ".nan").replace("inf", ".inf"))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(cfg))}: {key}: {message}"):
        resolve_config(cfg)
    cfg.write_text("data: d\nout: o\nlr: 0.001\n")  # a good YAML value, a bad flag: the flag is named
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        resolve_config(cfg, {key: value})


def test_one_budget_a_flag_replaces_the_yaml_budget(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: d\nout: o\nminutes: 5\n")
    config = resolve_config(cfg, {"max_steps": 7})
    assert (config.minutes, config.epochs, config.max_steps) == (None, None, 7)
    assert resolve_config(cfg, {"minutes": 2}).minutes == 2
    assert resolve_config(cfg).minutes == 5
    with pytest.raises(ConfigError, match="^--max-steps: give one budget .*got minutes and max_steps"):
        resolve_config(None, {"data": "d", "out": "o", "minutes": 1, "max_steps": 7})
    cfg.write_text("data: d\nout: o\nminutes: 5\nepochs: 3\n")
    for flags in ({}, {"max_steps": 7}):
        with pytest.raises(ConfigError, match=f"^{re.escape(str(cfg))}: give one budget .*got minutes and epochs"):
            resolve_config(cfg, flags)
