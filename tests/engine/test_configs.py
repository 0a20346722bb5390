"""Every packaged recipe (seglab/configs) is a valid config, addressable by name, and builds its model, data and module."""

import pytest

from seglab.config import find_config, load_yaml, packaged_configs, resolve_config
from seglab.engine.trainer import prepare
from seglab.errors import DataError

CONFIGS = list(packaged_configs().values())


def test_configs_exist_and_resolve_by_name(tmp_path):
    assert len(CONFIGS) >= 7
    assert find_config("nuclei_unet") == find_config("nuclei_unet.yaml") == packaged_configs()["nuclei_unet"]
    own = tmp_path / "nuclei_unet.yaml"  # a file the user names wins over the packaged recipe
    own.write_text("task: instance\n")
    assert find_config(own) == own
    with pytest.raises(DataError, match="nuclei_unet"):  # the error lists the packaged names
        find_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_prepares(path, tiny_data, tiny_semantic, tmp_path):
    data = tiny_semantic if load_yaml(path).get("task") == "semantic" else tiny_data
    config = resolve_config(path, {"out": str(tmp_path / "run"), "workers": 0, "data": str(data)})
    module, datamodule, recipe = prepare(config)
    assert recipe.task == config.task and module.meta["model"]["name"] == config.model
