"""The public names of seglab.data resolve lazily to the objects of their modules."""

import importlib
import subprocess
import sys

import pytest

import seglab.data


@pytest.mark.parametrize("name", sorted(seglab.data._EXPORTS))
def test_export_is_the_module_object(name):
    module = importlib.import_module(seglab.data._EXPORTS[name])
    assert getattr(seglab.data, name) is getattr(module, name)


def test_unknown_name():
    with pytest.raises(AttributeError):
        seglab.data.no_such_reader  # noqa: B018


def test_io_import_stays_light():
    code = "import sys, seglab.data.io; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
