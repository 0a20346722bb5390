"""``seglab evaluate --task panoptic`` on a written panoptic folder and predictions."""

import json

import numpy as np
import pytest

from seglab.cli import main
from seglab.data.io import write_image, write_label
from seglab.metrics.panoptic import NucleusTypeMetrics, PanopticMetrics

CLASSES = "- {name: background, thing: false}\n- {name: stroma, thing: false}\n- {name: tumour, thing: true}\n- {name: lymphocyte, thing: true}\n"


def _maps(rng):
    inst, cls = np.zeros((32, 32), np.int64), np.zeros((32, 32), np.int64)
    cls[:, 16:] = 1
    for k in range(1, 7):
        y, x = rng.integers(2, 26, 2)
        inst[y : y + 5, x : x + 5], cls[y : y + 5, x : x + 5] = k, 2 + k % 2
    cls[inst == 0] = np.where(np.arange(32) < 16, 0, 1)[None].repeat(32, 0)[inst == 0]
    return inst, cls


def test_evaluate_panoptic_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    (gt).mkdir()
    (gt / "classes.yaml").write_text(CLASSES)
    things, stuffs = [2, 3], [0, 1]
    pooled, types = PanopticMetrics(things=things, stuffs=stuffs), NucleusTypeMetrics(classes=things)
    for stem in ("a", "b"):
        gi, gc = _maps(rng)
        write_image(gt / "images" / f"{stem}.png", np.zeros((32, 32, 3), np.uint8))
        write_label(gt / "labels" / f"{stem}.tif", gi)
        write_label(gt / "classes" / f"{stem}.png", gc)
        pi = np.roll(gi, 1, 0)
        pc = np.roll(gc, 1, 0)
        pc[pi == 2] = 5 - pc[pi == 2]  # a wrong type
        write_label(pred / f"{stem}_instances.tif", pi)
        write_label(pred / f"{stem}_classes.png", pc)
        pooled.update(gc, gi, pc, pi)
        types.update(gi, gc, pi, pc)
    assert main(["evaluate", "--task", "panoptic", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "mPQ+ (CoNIC, pooled over images)" in out and "bPQ (PanNuke, per image)" in out
    report = json.loads((tmp_path / "r.json").read_text())
    want, want_types = pooled.compute(), types.compute()
    m = report["metrics"]
    assert m["pq"] == pytest.approx(want["pq"]) and m["pq_stuff"] == pytest.approx(want["pq_stuff"])
    assert m["mpq_plus"] == pytest.approx(want_types["mpq_plus"]) and m["mpq"] == pytest.approx(want_types["mpq"])
    assert m["per_class"]["tumour"]["pq"] == pytest.approx(want["per_class"][2]["pq"])


def test_evaluate_panoptic_missing_prediction(tmp_path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "classes.yaml").write_text(CLASSES)
    gi, gc = _maps(np.random.default_rng(1))
    write_label(gt / "labels" / "a.tif", gi)
    write_label(gt / "classes" / "a.png", gc)
    (tmp_path / "pred").mkdir()
    assert main(["evaluate", "--task", "panoptic", "--pred", str(tmp_path / "pred"), "--gt", str(gt)]) == 2
    assert "no prediction for a" in capsys.readouterr().err
