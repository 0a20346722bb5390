"""evaluate_folders: file pairing, per-image and aggregate figures, bad input."""

import json

import numpy as np
import pytest

from seglab.data.io import write_image, write_label
from seglab.errors import DataError, SeglabError
from seglab.metrics import ConfusionMatrix, InstanceMetrics, aji, panoptic_quality
from seglab.metrics.evaluate import evaluate_folders, format_table


def _blobs(rng, size=40, n=8):
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.int64)
    for k in range(n):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(3, 7)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 3 + 2 * k
    return lab


@pytest.fixture
def instance_folders(tmp_path):
    rng = np.random.default_rng(0)
    gts, preds = {}, {}
    for stem in ("a", "b", "c"):
        gt = _blobs(rng)
        pred = np.roll(gt, int(rng.integers(0, 3)), axis=1)
        pred[pred == gt.max()] = 0
        write_label(tmp_path / "gt" / "labels" / f"{stem}.tif", gt)
        write_image(tmp_path / "gt" / "images" / f"{stem}.png", np.zeros((40, 40, 3), np.uint8))
        name = f"{stem}_instances.tif" if stem != "c" else f"{stem}.png"  # both naming schemes
        write_label(tmp_path / "pred" / name, pred)
        gts[stem], preds[stem] = gt, pred
    return tmp_path, gts, preds


def test_instance_figures(instance_folders):
    root, gts, preds = instance_folders
    report = evaluate_folders(root / "pred", root / "gt", task="instance")
    assert report["task"] == "instance"
    assert [r["stem"] for r in report["per_image"]] == ["a", "b", "c"]
    acc = InstanceMetrics()
    for row in report["per_image"]:
        g, p = gts[row["stem"]], preds[row["stem"]]
        assert row["aji"] == pytest.approx(aji(g, p))
        assert row["pq"] == pytest.approx(panoptic_quality(g, p)["pq"])
        acc.update(g, p)
    want = acc.compute()
    for key in ("aji", "aji_plus", "pq", "sq", "dq", "f1", "dice"):
        assert report["metrics"][key] == pytest.approx(want["mean"][key])
        assert report["metrics_pooled"][key] == pytest.approx(want["pooled"][key])
    assert "mean over images" in report["aggregation"] and "pooled" in report["aggregation"]
    table = format_table(report)
    lines = table.splitlines()
    assert lines[-2].startswith("mean") and lines[-1].startswith("pooled")
    assert "aji" in lines[0] and len(lines) == 1 + 1 + 3 + 2  # header, rule, rows, aggregates
    json.dumps(report)  # serialisable


def test_labels_against_themselves_score_one(instance_folders):
    root, _, _ = instance_folders
    report = evaluate_folders(root / "gt", root / "gt", task="instance")  # finds gt/labels on both sides
    for key in ("aji", "aji_plus", "pq", "sq", "dq", "f1", "dice"):
        assert report["metrics"][key] == 1.0 and report["metrics_pooled"][key] == 1.0


def test_semantic(tmp_path):
    rng = np.random.default_rng(1)
    gts, preds = [], []
    for stem in ("x", "y"):
        gt = rng.integers(0, 3, (16, 20))
        gt[:2] = 255
        pred = np.where(rng.random(gt.shape) < 0.7, np.minimum(gt, 2), rng.integers(0, 3, gt.shape))
        write_label(tmp_path / "gt" / f"{stem}.png", gt)
        write_label(tmp_path / "pred" / f"{stem}_classes.png", pred)
        gts.append(gt)
        preds.append(pred)
    report = evaluate_folders(tmp_path / "pred", tmp_path / "gt", task="semantic", num_classes=4)
    per = []
    pooled = ConfusionMatrix(4)
    for g, p in zip(gts, preds, strict=True):
        cm = ConfusionMatrix(4)
        cm.update(p, g)
        pooled.update(p, g)
        per.append(cm.compute())
    assert report["metrics"]["miou"] == pytest.approx(np.mean([r["miou"] for r in per]))
    assert report["metrics"]["dice"] == pytest.approx(np.mean([r["mean_dice"] for r in per]))
    assert report["metrics"]["pixel_accuracy"] == pytest.approx(np.mean([r["pixel_accuracy"] for r in per]))
    pr = pooled.compute()
    assert report["metrics_pooled"]["miou"] == pytest.approx(pr["miou"])
    assert report["metrics_pooled"]["per_class"]["iou"][:3] == pytest.approx(pr["iou"][:3])
    assert report["metrics_pooled"]["per_class"]["iou"][3] is None  # class 3 never seen: NaN -> null
    inferred = evaluate_folders(tmp_path / "pred", tmp_path / "gt", task="semantic")
    assert len(inferred["metrics"]["per_class"]["iou"]) == 3
    assert inferred["metrics"]["miou"] == pytest.approx(report["metrics"]["miou"])
    assert "miou" in format_table(report)


def test_monuseg_xml_ground_truth(tmp_path):
    from seglab.data.monuseg import read_monuseg_xml

    xml = """<Annotations><Annotation><Regions>
      <Region Id="1"><Vertices><Vertex X="2" Y="2"/><Vertex X="9" Y="2"/><Vertex X="9" Y="8"/></Vertices></Region>
      <Region Id="2"><Vertices><Vertex X="15" Y="12"/><Vertex X="20" Y="12"/><Vertex X="20" Y="18"/><Vertex X="15" Y="18"/></Vertices></Region>
    </Regions></Annotation></Annotations>"""
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "tile.xml").write_text(xml)
    write_image(tmp_path / "gt" / "tile.tif", np.zeros((24, 30, 3), np.uint8))
    truth = read_monuseg_xml(tmp_path / "gt" / "tile.xml", (24, 30))
    write_label(tmp_path / "pred" / "tile_instances.tif", truth * 5)
    report = evaluate_folders(tmp_path / "pred", tmp_path / "gt", task="instance")
    assert report["per_image"][0]["stem"] == "tile"
    assert report["metrics"]["aji"] == 1.0 and report["metrics"]["pq"] == 1.0


def test_bad_input(instance_folders, tmp_path):
    root, gts, _ = instance_folders
    with pytest.raises(SeglabError, match="unknown task 'depth'"):
        evaluate_folders(root / "pred", root / "gt", task="depth")
    (root / "pred" / "b_instances.tif").unlink()
    with pytest.raises(DataError, match=r"b\.tif.*no prediction"):
        evaluate_folders(root / "pred", root / "gt", task="instance")
    write_label(root / "pred" / "b_instances.tif", np.zeros((40, 41), np.int64))
    with pytest.raises(DataError, match=r"b_instances\.tif: .*shape \(40, 41\) differs"):
        evaluate_folders(root / "pred", root / "gt", task="instance")
    with pytest.raises(DataError, match="no ground-truth label files"):
        (tmp_path / "empty").mkdir()
        evaluate_folders(root / "pred", tmp_path / "empty", task="instance")
    with pytest.raises(DataError, match="folder not found"):
        evaluate_folders(root / "nowhere", root / "gt", task="instance")
    write_label(root / "pred" / "b_instances.tif", gts["b"])
    with pytest.raises(DataError, match=r"a\.tif: .*class \d+ outside 0\.\.2"):
        evaluate_folders(root / "gt", root / "gt", task="semantic", num_classes=3)
