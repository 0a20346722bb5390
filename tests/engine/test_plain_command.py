"""The plain command on 16-bit fluorescence with a tiny dynamic range: planned, said, saved, normalised."""

import numpy as np
import yaml

from seglab.cli import main
from seglab.config import resolve_config
from seglab.data.io import read_image, write_image, write_label
from seglab.spec.checkpoint import load_checkpoint


def _fluo16(root, n=3, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        label = np.zeros((size, size), np.int32)
        for k in range(1, 6):
            cy, cx = rng.integers(6, size - 6, 2)
            label[((yy - cy) ** 2 + (xx - cx) ** 2 <= 25) & (label == 0)] = k
        image = 100 + np.where(label > 0, 250, 0) + rng.normal(0, 4, label.shape)
        write_image(root / "images" / f"f{i}.tif", image.astype(np.uint16))
        write_label(root / "labels" / f"f{i}.tif", label)
    return root


def test_plain_command_plans_from_the_data_and_normalises_16_bit(tmp_path, capsys):
    data = _fluo16(tmp_path / "fluo")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--task", "instance", "--model", "unet", "--max-steps", "2",
                 "--workers", "0", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "data: images: 3, 1 channel(s), uint16" in out
    for choice in ("modality fluorescence", "normalize image", "patch 64", "model_kwargs"):
        assert f"recipe: {choice}" in out, choice

    text = (run / "config.yaml").read_text()
    assert text.startswith("# chosen automatically") and "# modality fluorescence" in text
    saved = yaml.safe_load(text)
    assert saved["modality"] == "fluorescence" and saved["normalize"] == "image" and saved["patch"] == 64
    # the saved config resolves as it was (resume reads it), every planned key now pinned
    assert resolve_config(run / "config.yaml").model_kwargs == saved["model_kwargs"]
    assert (run / "fingerprint.json").is_file()

    meta = load_checkpoint(run / "best.ckpt")["seglab"]
    assert meta["preprocessing"]["intensity"] == {"mode": "image", "percentiles": [1.0, 99.8]}
    from seglab.inference import Predictor

    x = Predictor.from_checkpoint(run / "best.ckpt").preprocess(read_image(data / "images" / "f0.tif"))
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 2.0  # z-scored, not squeezed near 0
