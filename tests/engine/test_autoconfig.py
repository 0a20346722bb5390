"""The automatic recipe: each rule, pinned choices left alone, and the budget-driven width."""

import numpy as np
import pytest
import torch

import seglab.engine.autoconfig as auto
from seglab.analysis.receptive_field import receptive_field
from seglab.config import resolve_config
from seglab.data.fingerprint import Fingerprint


def _fp(*, diameter=14.0, p95=22.0, size=256, n=20, brighter=False, channels=3):
    area = np.pi * diameter**2 / 4
    return Fingerprint(
        task="instance", n_images=n, channels=channels, dtype="uint8", heights=[size] * n, widths=[size] * n,
        percentiles={"p50.0": [100.0] * channels}, mean=[100.0] * channels, std=[30.0] * channels,
        clip_low=[10.0] * channels, clip_high=[250.0] * channels, clipped_mean=[0.5] * channels,
        clipped_std=[0.2] * channels, image_mean=[0.3] * channels, image_std=[0.25] * channels,
        range_spread=[1.5] * channels, objects_brighter=brighter, objects_per_image=[30] * n,
        diameters={"median": diameter, "p05": diameter / 2, "p95": p95},
        areas={"median": area, "p05": area / 4, "p95": area * 2}, touching_share=0.4, foreground_share=0.2,
    )


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_receptive_field_formula_matches_the_measured_one(depth):
    measured = receptive_field("unet", in_channels=1, size=256, depth=depth, base_channels=4)
    assert (measured.height, measured.width) == (auto.unet_receptive_field(depth),) * 2


@pytest.mark.parametrize(
    ("diameter", "p95", "size", "gpu", "patch"),
    [
        (14, 22, 256, False, 128),  # nuclei at 20x: 8 diameters
        (7, 10, 256, False, 96),  # half-size nuclei: the floor
        (40, 60, 1024, False, 256),  # large cells: capped on a CPU
        (40, 60, 1024, True, 320),  # ... not on a GPU
        (40, 60, 200, True, 224),  # never larger than the images (rounded up to 32)
    ],
)
def test_patch_follows_object_size(diameter, p95, size, gpu, patch):
    assert auto.choose_patch(_fp(diameter=diameter, p95=p95, size=size), gpu=gpu)[0] == patch


def test_depth_sees_several_large_objects():
    assert auto.choose_depth(_fp(p95=10), 128)[0] == 3  # 50 px needed, 96 px at depth 3
    assert auto.choose_depth(_fp(p95=22), 128)[0] == 4
    assert auto.choose_depth(_fp(p95=60), 256)[0] == 5
    assert auto.choose_depth(_fp(p95=60), 96)[0] == 3  # the deepest map keeps >= 8 px


def _plan(monkeypatch, values, fp, seconds_per_width=lambda w: 0.01 * (w / 16) ** 2):
    def fake_step(model, channels, classes, patch, batch, device, steps=2):
        return seconds_per_width(model.encoder.out_channels[0])

    monkeypatch.setattr(auto, "_train_step_seconds", fake_step)
    config = resolve_config(None, {"data": "d", "out": "o", **values})
    return auto.plan_config(config, fp, classes=3, aux={}, device=torch.device("cpu"))


def test_width_is_the_widest_that_gets_enough_steps(monkeypatch):
    # 0.01 s/step at width 16, quadratic in width: 3 min * 0.85 = 153 s -> 500 steps need <= 0.306 s
    plan = _plan(monkeypatch, {"minutes": 3}, _fp())
    assert plan.config.model_kwargs == {"depth": 4, "base_channels": 64}
    plan = _plan(monkeypatch, {"minutes": 3}, _fp(), lambda w: 0.2 * (w / 16) ** 2)  # 24: 0.45 s: too slow
    assert plan.config.model_kwargs["base_channels"] == 16 and not plan.warnings
    plan = _plan(monkeypatch, {"minutes": 3}, _fp(), lambda w: 2.0 * (w / 16) ** 2)
    assert plan.config.model_kwargs["base_channels"] == 8
    assert plan.warnings and "--minutes" in plan.warnings[0]


def test_without_a_time_budget_the_width_comes_from_memory(monkeypatch):
    monkeypatch.setattr(auto, "CPU_MEMORY_BYTES", 250 * 2**20)  # width 24 takes 219 MiB, 32 takes 294 MiB
    plan = _plan(monkeypatch, {"epochs": 3}, _fp())
    width = plan.config.model_kwargs["base_channels"]
    assert width == 24
    from seglab.analysis.memory import memory_profile

    step = lambda w: memory_profile(auto._unet(3, 3, 4, w, {}), 128, 8, in_channels=3).activation_bytes  # noqa: E731
    assert step(width) <= auto.CPU_MEMORY_BYTES < step(auto.WIDTHS[auto.WIDTHS.index(width) + 1])


def test_pinned_choices_are_left_alone_and_every_choice_says_why(monkeypatch):
    fp = _fp(brighter=True, channels=1)
    plan = _plan(monkeypatch, {"minutes": 3}, fp)
    keys = [line.split(" ")[0] for line in plan.reasons]
    assert {"modality", "normalize", "patch", "batch_size", "model_kwargs", "patches_per_image", "decoder"} <= set(keys)
    assert plan.config.modality == "fluorescence" and plan.config.normalize == "image"
    assert _plan(monkeypatch, {"minutes": 3}, _fp(brighter=False)).config.normalize == "dataset"
    assert plan.config.decoder_kwargs == {"min_size": round(0.1 * fp.areas["median"])}
    pinned = {"minutes": 3, "patch": 64, "batch_size": 3, "model_kwargs": {"depth": 2, "base_channels": 64},
              "modality": "brightfield", "patches_per_image": 2, "decoder_kwargs": {"min_size": 1}}
    plan = _plan(monkeypatch, pinned, fp)
    for key, value in pinned.items():
        assert getattr(plan.config, key) == value, key
    assert [line.split(" ")[0] for line in plan.reasons] == ["normalize"]


def test_other_models_are_not_resized(monkeypatch):
    plan = _plan(monkeypatch, {"minutes": 3, "model": "deeplabv3plus", "encoder": "resnet18"}, _fp())
    assert plan.config.model_kwargs == {} and plan.config.patch == 128


def test_large_objects_reach_the_network_downscaled(monkeypatch):
    fp = _fp(diameter=65, p95=80, size=1024)
    assert auto.choose_scale(fp) == 0.5 and auto.choose_scale(_fp(diameter=100)) == 0.25
    assert auto.choose_scale(_fp(diameter=36)) == 1.0
    plan = _plan(monkeypatch, {"minutes": 3}, fp)
    kwargs = plan.config.model_kwargs
    assert kwargs["input_scale"] == 0.5
    # the network sees 32.5 px objects: patch 8 x 32.5 -> 288 px, capped at 256 on a CPU, i.e. 512 px of image
    assert plan.config.patch == 512 and plan.config.batch_size == 2
    assert kwargs["depth"] == auto.choose_depth(auto.scaled(fp, 0.5), 256)[0]
    other = _plan(monkeypatch, {"minutes": 3, "model": "deeplabv3plus", "encoder": "resnet18"}, fp)
    assert other.config.model_kwargs == {"input_scale": 0.5}
    pinned = _plan(monkeypatch, {"minutes": 3, "model_kwargs": {"depth": 4}}, fp)
    assert pinned.config.model_kwargs == {"depth": 4} and pinned.config.patch == 256


def test_input_scale_runs_the_network_on_the_resized_image():
    from seglab.models import create_model

    torch.manual_seed(0)
    scaled_model = create_model("unet", in_channels=1, num_classes=2, depth=2, base_channels=4, input_scale=0.5).eval()
    x = torch.rand(1, 1, 64, 48)
    small = torch.nn.functional.interpolate(x, size=(32, 24), mode="bilinear", align_corners=False, antialias=True)
    scaled_model.input_scale = 1.0
    expected = torch.nn.functional.interpolate(scaled_model(small), size=(64, 48), mode="bilinear", align_corners=False)
    scaled_model.input_scale = 0.5
    torch.testing.assert_close(scaled_model(x), expected)
