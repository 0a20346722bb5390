"""Shared fixtures of the export tests: a tiny trained checkpoint."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import shared_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return shared_tiny_checkpoint(tmp_path_factory)
