"""Panoptic folder format: classes.yaml, majority class per instance, data check problems."""

from pathlib import Path

import numpy as np
import pytest

from seglab.cli import main
from seglab.data.io import write_image, write_label
from seglab.data.panoptic import (
    decode,
    encode,
    parse_classes,
    read_classes,
    read_panoptic,
    resolve,
    same_classes,
)
from seglab.errors import DataError

CLASSES = """\
- {name: background, thing: false}
- {name: stroma, thing: false, color: [240, 170, 200]}
- {name: tumour, thing: true, color: "#e41a1c"}
- {name: lymphocyte, thing: true}
"""


def write_folder(root: Path, classes_text: str = CLASSES, *, cls_patch=None) -> tuple[np.ndarray, np.ndarray]:
    inst = np.zeros((16, 16), np.int64)
    cls = np.zeros((16, 16), np.int64)
    cls[:, 8:] = 1
    inst[2:6, 2:6], cls[2:6, 2:6] = 1, 2
    inst[9:13, 9:13], cls[9:13, 9:13] = 2, 3
    cls[9, 9:11] = 2  # instance 2 disagrees: 14 lymphocyte pixels, 2 tumour
    if cls_patch:
        cls_patch(inst, cls)
    write_image(root / "images" / "a.png", np.full((16, 16, 3), 128, np.uint8))
    write_label(root / "labels" / "a.tif", inst)
    write_label(root / "classes" / "a.png", cls)
    (root / "classes.yaml").write_text(classes_text)
    return inst, cls


def test_classes_yaml_and_majority(tmp_path):
    inst, _ = write_folder(tmp_path)
    classes = read_classes(tmp_path)
    assert [c.name for c in classes] == ["background", "stroma", "tumour", "lymphocyte"]
    assert classes[2].color == (228, 26, 28) and classes[1].color == (240, 170, 200)
    got_inst, got_cls = read_panoptic(tmp_path / "labels" / "a.tif")
    assert (got_inst == inst).all()
    assert (got_cls[inst == 2] == 3).all() and (got_cls[inst == 1] == 2).all()  # majority wins
    assert got_cls[0, 0] == 0 and got_cls[0, 15] == 1
    code = encode(got_inst, got_cls)
    back = decode(code)
    assert (back[0] == got_inst).all() and (back[1] == got_cls).all()


def test_resolve_reports():
    classes = parse_classes([{"name": "bg", "thing": False}, {"name": "t", "thing": True}], Path("c.yaml"))
    inst = np.array([[1, 1, 2], [0, 0, 2]])
    cls = np.array([[1, 0, 0], [1, 0, 255]])
    out, info = resolve(inst, cls, classes)
    assert info["disagreeing"].tolist() == [1] and info["no_class"].tolist() == [2] and info["stray"] == 1
    assert out[1, 0] == 255 and out[0, 1] == 1
    with pytest.raises(DataError, match="class id 8 is missing from classes.yaml"):
        resolve(inst, cls + 7 * (cls == 1), classes)


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "t", "thing": True}, {"name": "b", "thing": False}], "class 0"),
    ([{"name": "a", "thing": False}, {"name": "b", "thing": False}], "no thing class"),
    ([{"name": "a", "thing": False}, {"name": "a", "thing": True}], "used twice"),
    ([{"name": "a", "thing": False}, {"name": "b", "thing": True, "color": "red"}], "color"),
    ([{"name": "a"}, {"name": "b", "thing": True}], "class 0: expected"),
])
def test_bad_classes_yaml(entries, message):
    with pytest.raises(DataError, match=message):
        parse_classes(entries, Path("classes.yaml"))


def test_train_val_disagree(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "val", CLASSES.replace("lymphocyte", "stromal"))
    with pytest.raises(DataError, match="val/classes.yaml: disagrees with .*train/classes.yaml at class 3"):
        same_classes(tmp_path / "train", tmp_path / "val")


def test_data_check_cli(tmp_path, capsys):
    write_folder(tmp_path)
    assert main(["data", "check", str(tmp_path), "--task", "panoptic"]) == 0
    out = capsys.readouterr().out
    assert "1 instances disagree on the class, majority taken: ids 2" in out
    assert "tumour" in out and "problems: 0" in out


def test_data_check_problems(tmp_path, capsys):
    def damage(inst, cls):
        cls[0, 0] = 9  # a class id missing from classes.yaml
    write_folder(tmp_path, CLASSES + "- {name: dead, thing: true}\n", cls_patch=damage)
    assert main(["data", "check", str(tmp_path), "--task", "panoptic"]) == 1
    out = capsys.readouterr().out
    assert "a.png: class id 9 is missing from classes.yaml" in out

    def no_class(inst, cls):
        cls[inst == 1] = 1  # instance 1 carries only a stuff class
    other = tmp_path / "other"
    write_folder(other, CLASSES + "- {name: dead, thing: true}\n", cls_patch=no_class)
    assert main(["data", "check", str(other), "--task", "panoptic"]) == 1
    out = capsys.readouterr().out
    assert "1 instances with no class (no thing-class pixel): ids 1" in out
    assert "thing class 4 ('dead') has no instance in the data" in out


def test_data_check_val_disagrees(tmp_path, capsys):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "val", CLASSES.replace("lymphocyte", "stromal"))
    assert main(["data", "check", str(tmp_path / "train"), "--task", "panoptic", "--val", str(tmp_path / "val")]) == 1
    assert "val/classes.yaml: disagrees with" in capsys.readouterr().out
