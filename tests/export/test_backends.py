"""Runtime backends: the whole tiled path (sliding windows, TTA, decoding) on ONNX Runtime and
TorchScript gives the instance map the eager model gives."""

import numpy as np
import pytest

from seglab.data.synthetic import synth_tile
from seglab.errors import DataError, SeglabError
from seglab.export import export_checkpoint
from seglab.inference import load_predictor
from seglab.metrics import aji


@pytest.fixture(scope="module")
def image():
    return synth_tile(150, seed=42)


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_tiled_tta_prediction_equals_torch(tiny_checkpoint, image, backend):
    options = {"tile": 64, "overlap": 0.25, "tta": True}
    ref = load_predictor(tiny_checkpoint, **options).predict(image[0])
    got = load_predictor(tiny_checkpoint, backend=backend, **options).predict(image[0])
    assert np.abs(got["probs"] - ref["probs"]).max() < 1e-4
    assert ref["instances"].max() >= 10 and aji(image[1], ref["instances"]) > 0.5  # a model that finds nuclei
    assert np.array_equal(got["instances"], ref["instances"])


def test_export_cache_beside_checkpoint_is_reused(tiny_checkpoint):
    first = load_predictor(tiny_checkpoint, backend="onnxruntime").run_model.model_file
    assert first.parent == tiny_checkpoint.with_name("tiny.export") and first.suffix == ".onnx"
    stamp = first.stat().st_mtime_ns
    again = load_predictor(tiny_checkpoint, backend="onnxruntime").run_model.model_file
    assert again == first and again.stat().st_mtime_ns == stamp


def test_model_file_must_fit_backend_and_checkpoint(tiny_checkpoint, tmp_path):
    export_checkpoint(tiny_checkpoint, tmp_path / "m.pt", fmt="torchscript")
    with pytest.raises(DataError, match=r"m\.pt: is a torchscript export; --backend onnxruntime runs onnx files"):
        load_predictor(tiny_checkpoint, backend="onnxruntime", model_file=tmp_path / "m.pt")
    with pytest.raises(DataError, match=r"m\.onnx\.json: sidecar not found"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        load_predictor(tiny_checkpoint, backend="onnxruntime", model_file=tmp_path / "m.onnx")
    with pytest.raises(SeglabError, match="unknown backend 'tensorrt'; valid choices: onnxruntime, torch, torchscript"):
        load_predictor(tiny_checkpoint, backend="tensorrt")


def test_cli_predict_backend_writes_the_same_instances(tiny_checkpoint, image, tmp_path):
    from seglab.cli import main
    from seglab.data.io import read_label, write_image

    write_image(tmp_path / "in" / "a.png", image[0])
    for backend in ("torch", "onnxruntime"):
        assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path / "in"),
                     "--output", str(tmp_path / backend), "--tile", "64", "--backend", backend]) == 0
    torch_map = read_label(tmp_path / "torch" / "a_instances.tif")
    assert torch_map.max() >= 10 and np.array_equal(read_label(tmp_path / "onnxruntime" / "a_instances.tif"), torch_map)
