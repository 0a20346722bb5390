"""``seglab export`` from the command line: fp32 files, int8 with the AJI/PQ change, one-line errors."""

import numpy as np
import onnx

from seglab.cli import main
from seglab.data.io import write_image, write_label
from seglab.data.synthetic import synth_tile
from seglab.export import load_runner


def test_export_onnx_and_torchscript(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.onnx.json").is_file()
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]


def test_int8_prints_the_aji_change(tiny_checkpoint, tmp_path, capsys):
    calib = tmp_path / "calib"
    for i in range(2):
        image, inst = synth_tile(128, seed=200 + i)
        write_image(calib / "images" / f"s{i}.png", image)
        write_label(calib / "labels" / f"s{i}.tif", inst)
    out = tmp_path / "q.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quantize", "int8",
                 "--calibration", str(calib), "--tile", "64"]) == 0
    text = capsys.readouterr().out
    assert "AJI fp32" in text and "int8" in text and "PQ fp32" in text
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    import torch

    assert load_runner(out)(torch.from_numpy(x))[0].shape == (1, 3, 64, 64)


def test_errors_are_one_line(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "m.pt"), "--format", "torchscript",
                 "--quantize", "int8", "--calibration", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "seglab: error: --quantize int8 needs --format onnx (ONNX Runtime runs the quantized model)"
    assert main(["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.ckpt: checkpoint not found" in err
