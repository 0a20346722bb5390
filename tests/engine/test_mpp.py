"""Training records the µm/px: pinned in the config, else from the images' metadata, else unknown."""

import shutil

import numpy as np
import pytest
from PIL import Image

from seglab.config import resolve_config
from seglab.engine.trainer import plan_run, prepare
from seglab.errors import ConfigError


@pytest.fixture
def data_at_half_micron(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root, ignore=shutil.ignore_patterns(".seglab"))
    for path in (root / "images").iterdir():
        image = np.asarray(Image.open(path))
        path.unlink()
        Image.fromarray(image).save(path.with_suffix(".png"), dpi=(50800, 50800))  # 0.5 µm/px
    return root


def test_the_images_mpp_reaches_the_checkpoint_metadata(tiny, data_at_half_micron, tiny_data, tmp_path):
    config = resolve_config(None, {**tiny, "data": str(data_at_half_micron), "out": str(tmp_path / "r")})
    run = plan_run(config)
    assert run.config.mpp == pytest.approx(0.5, rel=1e-3)
    assert any(line.startswith("mpp 0.5") and "median of the 5 of 5 images" in line for line in run.reasons)
    module, _, _ = prepare(run.config, run)
    assert module.meta["mpp"] == pytest.approx(0.5, rel=1e-3)
    pinned = resolve_config(None, {**tiny, "data": str(data_at_half_micron), "out": str(tmp_path / "p"), "mpp": 0.25})
    assert prepare(pinned)[0].meta["mpp"] == 0.25
    unknown = resolve_config(None, {**tiny, "data": str(tiny_data), "out": str(tmp_path / "u")})
    assert prepare(unknown)[0].meta["mpp"] is None


def test_a_bad_mpp_names_the_key():
    with pytest.raises(ConfigError, match="mpp"):
        resolve_config(None, {"data": "d", "out": "o", "mpp": -1})


def test_train_mpp_flag_pins_the_config_key():
    from seglab.cli import build_parser
    from seglab.cli.train import _OVERRIDES

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--mpp", "0.3"])
    config = resolve_config(None, {key: getattr(args, key) for key in _OVERRIDES})
    assert config.mpp == 0.3 and "mpp" in config.model_fields_set
