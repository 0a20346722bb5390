"""``seglab data convert``: each source format written small, in its real layout, by the test."""

import json

import numpy as np
import pytest

from seglab.cli import main
from seglab.data.io import read_image, read_label, write_image
from seglab.data.panoptic import read_classes, read_panoptic


def _discs(size=32, centres=((8, 8), (20, 22), (24, 6))):
    yy, xx = np.mgrid[:size, :size]
    return [((yy - y) ** 2 + (xx - x) ** 2 <= 16) for y, x in centres]


def _check(out, n_images, expect_classes):
    classes = read_classes(out)
    assert [c.name for c in classes] == expect_classes
    labels = sorted((out / "labels").glob("*.tif"))
    assert len(labels) == n_images
    return [read_panoptic(p, classes) for p in labels]


def test_pannuke(tmp_path):
    fold = tmp_path / "Fold 1"
    (fold / "images" / "fold1").mkdir(parents=True)
    (fold / "masks" / "fold1").mkdir(parents=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))  # float64, as released
    masks = np.zeros((2, 32, 32, 6))
    a, b, c = _discs()
    masks[0, a, 0] = 7  # neoplastic id 7
    masks[0, b, 1] = 7  # inflammatory reuses id 7: ids are per channel
    masks[0, c, 4] = 3  # epithelial
    masks[0, ..., 5] = ~(a | b | c)
    masks[1, ..., 5] = 1
    np.save(fold / "images" / "fold1" / "images.npy", images)
    np.save(fold / "masks" / "fold1" / "masks.npy", masks)
    np.save(fold / "images" / "fold1" / "types.npy", np.array(["Breast", "Colon"]))
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "pannuke", str(fold), "--out", str(out)]) == 0
    (inst, cls), (inst2, _) = _check(out, 2, ["background", "neoplastic", "inflammatory", "connective", "dead", "epithelial"])
    assert inst.max() == 3 and len(np.unique(inst[a])) == 1 and inst[a][0] != inst[b][0]
    assert (cls[a] == 1).all() and (cls[b] == 2).all() and (cls[c] == 5).all() and cls[0, 31] == 0
    assert inst2.max() == 0
    assert (out / "images" / "Breast_00000.png").is_file()
    assert np.abs(read_image(out / "images" / "Breast_00000.png").astype(float) - images[0]).max() <= 0.5


def test_conic_npy(tmp_path):
    a, b, _ = _discs()
    labels = np.zeros((1, 32, 32, 2), np.int32)
    labels[0, a], labels[0, b] = (1, 3), (2, 6)
    np.save(tmp_path / "images.npy", np.zeros((1, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", labels)
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "conic", str(tmp_path), "--out", str(out)]) == 0
    [(inst, cls)] = _check(out, 1, ["background", "neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective"])
    assert (cls[a] == 3).all() and (cls[b] == 6).all() and (inst[a] == 1).all()


def test_lizard_mat(tmp_path):
    from scipy.io import savemat

    a, b, c = _discs()
    inst = np.zeros((32, 32), np.int32)
    inst[a], inst[b], inst[c] = 4, 9, 2
    (tmp_path / "Labels").mkdir()
    savemat(tmp_path / "Labels" / "consep_1.mat", {"inst_map": inst, "id": np.array([[2], [4], [9]]),
                                                    "class": np.array([[1], [2], [5]])})
    write_image(tmp_path / "Images" / "consep_1.png", np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "conic", str(tmp_path), "--out", str(out)]) == 0
    [(got_inst, cls)] = _check(out, 1, ["background", "neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective"])
    assert (cls[a] == 2).all() and (cls[b] == 5).all() and (cls[c] == 1).all() and (got_inst == inst).all()


def test_lizard_mat_bad(tmp_path, capsys):
    from scipy.io import savemat

    (tmp_path / "Labels").mkdir()
    savemat(tmp_path / "Labels" / "x.mat", {"inst_map": np.ones((4, 4), np.int32)})
    write_image(tmp_path / "Images" / "x.png", np.zeros((4, 4, 3), np.uint8))
    assert main(["data", "convert", "--from", "conic", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "x.mat: Lizard label lacks 'id'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "classes.yaml").exists()


def test_coco_panoptic(tmp_path):
    a, b, _ = _discs()
    ids = np.zeros((32, 32), np.int64)
    ids[:, 16:] = 300  # stuff "grass"
    ids[a], ids[b] = 70000, 5  # person (thing) segments; 70000 needs all three channels
    ids[0, 0] = 0  # unlabelled
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    write_image(tmp_path / "panoptic_val" / "000001.png", rgb)
    write_image(tmp_path / "images" / "000001.jpg", np.zeros((32, 32, 3), np.uint8))
    doc = {
        "images": [{"id": 1, "file_name": "000001.jpg", "height": 32, "width": 32}],
        "annotations": [{"image_id": 1, "file_name": "000001.png", "segments_info": [
            {"id": 70000, "category_id": 1}, {"id": 5, "category_id": 1}, {"id": 300, "category_id": 184}]}],
        "categories": [{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
                       {"id": 184, "name": "grass", "isthing": 0, "color": [0, 200, 0]}],
    }
    (tmp_path / "panoptic_val.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "coco-panoptic", str(tmp_path / "panoptic_val.json"), "--out", str(out)]) == 0
    [(inst, cls)] = _check(out, 1, ["background", "person", "grass"])
    assert (cls[a] == 1).all() and (cls[b] == 1).all() and inst[a][0] != inst[b][0] and inst[a][0] > 0
    assert cls[0, 0] == 255 and cls[5, 20] == 2 and inst[5, 20] == 0
    assert read_classes(out)[1].color == (220, 20, 60)


def test_geojson_qupath(tmp_path):
    write_image(tmp_path / "images" / "slide1.png", np.zeros((32, 40, 3), np.uint8))
    square = lambda x0, y0, x1, y1: [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]  # noqa: E731
    feats = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square(0, 0, 20, 32)},
         "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square(2, 2, 8, 8)},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [square(30, 20, 36, 26)]},
         "properties": {"objectType": "detection", "classification": {"name": "Immune cells", "color": -16776961}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square(10, 10, 18, 18)[0], square(13, 13, 15, 15)[0]]},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square(22, 0, 34, 12)},  # a QuPath cell
         "nucleusGeometry": {"type": "Polygon", "coordinates": square(25, 3, 29, 7)},
         "properties": {"objectType": "cell", "classification": {"name": "Tumor"}}},
    ]
    (tmp_path / "slide1.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "geojson", str(tmp_path), "--out", str(out), "--stuff", "Stroma"]) == 0
    [(inst, cls)] = _check(out, 1, ["background", "Stroma", "Immune cells", "Tumor"])
    assert (inst[2:8, 2:8] == 1).all() and (cls[2:8, 2:8] == 3).all() and inst[:, :2].max() == 0
    assert cls[0, 0] == 1 and cls[0, 25] == 0  # region, then background
    assert (cls[20:26, 30:36] == 2).all() and read_classes(out)[2].color == (0, 0, 255)
    assert inst[14, 14] == 0 and cls[14, 14] == 1 and inst[11, 11] == 3  # the hole shows the region beneath
    assert read_label(out / "classes" / "slide1.png").shape == (32, 40)
    assert inst[3:7, 25:29].min() == 4 and inst[0, 22] == 0  # the cell's nucleus, not its outline


def test_unknown_layout_one_line(tmp_path, capsys):
    assert main(["data", "convert", "--from", "pannuke", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected one images.npy" in err


@pytest.mark.parametrize("fmt", ["pannuke", "conic", "geojson"])
def test_missing_source(tmp_path, fmt, capsys):
    assert main(["data", "convert", "--from", fmt, str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("seglab: error: ")
