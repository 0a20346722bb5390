"""Library warnings that reached the user's terminal are fixed where they arise, not filtered."""

import warnings

import numpy as np
import torch

from seglab.config import resolve_config
from seglab.data.io import image_to_tensor, read_image, write_image
from seglab.engine.trainer import train


def _refuse_read_only(monkeypatch) -> list:
    """``torch.from_numpy`` records every read-only array it is given (torch warns about those
    only once per process, so the warning alone cannot tell a second offender)."""
    read_only = []
    from_numpy = torch.from_numpy

    def checked(array):
        if not array.flags.writeable:
            read_only.append(array.shape)
        return from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", checked)
    return read_only


def test_image_to_tensor_never_wraps_a_read_only_array(tmp_path, monkeypatch):
    read_only = _refuse_read_only(monkeypatch)
    write_image(tmp_path / "gray.png", (np.arange(48 * 40).reshape(48, 40) % 251).astype(np.uint8))
    gray = read_image(tmp_path / "gray.png")  # PIL's buffer: read-only, and C x H x W is a view of it
    assert not gray.flags.writeable
    for image in (gray, gray.astype(np.float32), np.stack([gray[..., 0]] * 3, axis=-1)):
        image.flags.writeable = False
        tensor = image_to_tensor(image)
        assert tensor.dtype == torch.float32 and tensor.shape == (image.shape[2], 48, 40) and tensor.is_contiguous()
        scale = float(np.iinfo(image.dtype).max) if image.dtype.kind == "u" else 1.0
        torch.testing.assert_close(tensor, torch.tensor(image.transpose(2, 0, 1).astype(np.float32)) / scale)
    assert read_only == []


def test_tiny_training_on_gray_images_wraps_no_read_only_array(tiny, tmp_path, monkeypatch):
    """Gray images: their decoded buffers are read-only, and calibration and overlays predict on
    them. (Lightning's sync_dist warning needs two ranks: see test_module.py's DDP run.)"""
    from seglab.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=5, size=48, seed=3)
    for path in (tmp_path / "data" / "images").iterdir():
        write_image(path, read_image(path)[..., :1])
    read_only = _refuse_read_only(monkeypatch)
    values = {**tiny, "data": str(tmp_path / "data"), "out": str(tmp_path / "run"), "max_steps": 2, "normalize": "dtype"}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*NumPy array is not writable.*")
        result = train(resolve_config(None, values), plain_log=True)
    assert result.steps == 2 and list((tmp_path / "run" / "overlays").glob("*.png"))
    assert read_only == []
