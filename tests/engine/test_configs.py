"""Every recipe in configs/ is a valid config and builds its model, data and module."""

from pathlib import Path

import pytest

from seglab.config import load_yaml, resolve_config
from seglab.engine.trainer import prepare

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 7


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_prepares(path, tiny_data, tiny_semantic, tmp_path):
    data = tiny_semantic if load_yaml(path).get("task") == "semantic" else tiny_data
    config = resolve_config(path, {"out": str(tmp_path / "run"), "workers": 0, "data": str(data)})
    module, datamodule, recipe = prepare(config)
    assert recipe.task == config.task and module.meta["model"]["name"] == config.model
