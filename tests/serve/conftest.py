"""Fixtures of the server tests: a tiny trained checkpoint, its predictor and app, test images."""

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))

from tiny_model import shared_tiny_checkpoint  # noqa: E402

from seglab.data.synthetic import synth_tile  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return shared_tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="session")
def image():
    return synth_tile(160, seed=7)[0]


@pytest.fixture(scope="session")
def png_bytes(image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def make_predictor(checkpoint):
    from seglab.inference import load_predictor

    predictor = load_predictor(checkpoint)
    predictor.tile = 64
    return predictor


@pytest.fixture(scope="session")
def shared_predictor(tiny_checkpoint):
    return make_predictor(tiny_checkpoint)
