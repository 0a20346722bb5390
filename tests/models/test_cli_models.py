"""``seglab models``: the CLI prints what the library computes."""

import argparse

import pytest
import torch

from seglab.analysis import count_flops, memory_profile, receptive_field
from seglab.cli import models as cli
from seglab.errors import ConfigError
from seglab.models import DETECTION_MODELS, MODELS, create_model


def run(**kwargs) -> None:
    args = argparse.Namespace(analyze=None, size=256, batch=1, encoder=None, in_channels=3)
    vars(args).update(kwargs)
    assert cli.run(args) == 0


def test_list_names_every_model_with_its_parameter_count(capsys):
    run()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [*MODELS, *DETECTION_MODELS]
    with torch.device("meta"):
        params = sum(p.numel() for p in create_model("allconv", num_classes=2).parameters())
    assert f"{params:,}" in lines[1]


def test_analyze_prints_the_library_figures(capsys):
    run(analyze="allconv", size=64, batch=2)
    out = capsys.readouterr().out
    with torch.device("meta"):
        model = create_model("allconv", num_classes=2)
    mem = memory_profile(model, 64, 2)
    assert f"{mem.activation_bytes / 2**20:,.1f} MiB" in out
    assert str(receptive_field(model, size=64)) in out
    assert f"{count_flops(model, 64, 2) / 1e9:.2f} G" in out


def test_analyze_unknown_model():
    with pytest.raises(ConfigError, match="unknown model"):
        run(analyze="segnet")


def test_analyze_refuses_detection_models_in_one_line(capsys):
    from seglab.cli import main

    assert main(["models", "--analyze", "maskrcnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seglab: error:") and "detection model" in err and "\n" not in err


def test_zero_input_channels_is_one_line(monkeypatch, capsys):
    import seglab.cli

    monkeypatch.setattr(seglab.cli, "COMMANDS", {"models": "seglab.cli.models"})
    assert seglab.cli.main(["models", "--analyze", "unet", "--in-channels", "0"]) == 2
    assert capsys.readouterr().err == "seglab: error: --in-channels: must be >= 1, got 0\n"
