"""The train command's console: Lightning's banners and tips stay out of it."""

import subprocess
import sys


def test_train_command_prints_no_lightning_banners(tmp_path):
    from seglab.data.synthetic import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, n=3, size=48, seed=1)
    config = tmp_path / "tiny.yaml"
    config.write_text("model: unet\nmodel_kwargs: {depth: 2, base_channels: 4}\nworkers: 0\noverlays: 0\n"
                      "patch: 32\nbatch_size: 2\ncalibrate: false\n")
    # a fresh process: logger levels are process state, which the test session has already set
    out = subprocess.run([sys.executable, "-m", "seglab", "train", "--config", str(config), "--data", str(data),
                          "--out", str(tmp_path / "run"), "--max-steps", "1"], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "GPU available" not in text and "Tip:" not in text and "best val/aji" in text
