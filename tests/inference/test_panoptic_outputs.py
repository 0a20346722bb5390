"""Prediction with a panoptic checkpoint: classes, COCO panoptic, typed GeoJSON, overlay, summaries."""

import csv
import json

import numpy as np
import pytest
import torch

from seglab.data.convert.coco_panoptic import rgb_to_id
from seglab.data.io import read_image, read_label, write_image
from seglab.errors import DataError
from seglab.inference import load_predictor, predict_files
from seglab.inference.predictor import load_model
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

CLASSES = [{"name": "background", "thing": False, "color": [235, 235, 235]},
           {"name": "stroma", "thing": False, "color": [240, 170, 200]},
           {"name": "tumour", "thing": True, "color": [228, 26, 28]},
           {"name": "lymphocyte", "thing": True, "color": [55, 126, 184]}]
KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4, "aux_heads": {"classes": 4}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet", **KW)
    with torch.no_grad():  # a confident interior where the image is dark, so instances appear
        conv = model.heads.convs["logits"]
        for p in conv.parameters():
            p.zero_()
    meta = make_meta(task="panoptic", model_name="unet", model_kwargs=KW, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}}, patch_size=32)
    meta["panoptic"] = {"classes": CLASSES, "min_stuff_area": 0}
    path = tmp_path_factory.mktemp("ckpt") / "p.ckpt"
    save_checkpoint(path, model, meta)
    return path


def test_outputs_agree(tmp_path, checkpoint, monkeypatch):
    images = tmp_path / "in"
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        write_image(images / f"{stem}.png", rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    predictor = load_predictor(checkpoint, tile=32)
    # deterministic instances: squares (the untrained watershed input is replaced, fusion is real)
    squares = np.zeros((40, 48), np.int32)
    squares[4:12, 4:12], squares[20:30, 30:40] = 1, 2
    monkeypatch.setattr(predictor, "decode_probs", lambda probs: squares[: probs.shape[1], : probs.shape[2]].copy())
    out = tmp_path / "out"
    predict_files(predictor, sorted(images.iterdir()), out)
    cls = read_label(out / "a_classes.png")
    inst = read_label(out / "a_instances.tif")
    assert (inst == squares).all()
    assert set(np.unique(cls[inst > 0])) <= {2, 3} and set(np.unique(cls[inst == 0])) <= {0, 1}
    # COCO panoptic: every segment's pixels carry its category (class + 1)
    doc = json.loads((out / "a_panoptic.json").read_text())
    ids = rgb_to_id(read_image(out / "a_panoptic.png"))
    cats = {c["id"]: c for c in doc["categories"]}
    assert [cats[i + 1]["name"] for i in range(4)] == [c["name"] for c in CLASSES]
    for seg in doc["annotations"][0]["segments_info"]:
        mask = ids == seg["id"]
        assert mask.sum() == seg["area"] and (cls[mask] == seg["category_id"] - 1).all()
        assert bool(cats[seg["category_id"]]["isthing"]) == ("type_prob" in seg)
    # GeoJSON: classification of each nucleus, its colour, type_prob in (0, 1]
    feats = json.loads((out / "a.geojson").read_text())["features"]
    assert len(feats) == 2
    for f in feats:
        props = f["properties"]
        name = CLASSES[int(cls[inst == props["id"]][0])]["name"]
        assert props["classification"]["name"] == name
        assert props["classification"]["color"] == next(c["color"] for c in CLASSES if c["name"] == name)
        assert 0.5 <= props["type_prob"] <= 1.0  # the winner of two thing classes
    rows = {r["stem"]: r for r in csv.DictReader((out / "summary_classes.csv").open())}
    counts = {c["name"]: int(rows["a"][f"{c['name']}_count"]) for c in CLASSES if c["thing"]}
    assert sum(counts.values()) == 2 == int(rows["a"]["instances"])
    assert float(rows["a"]["tumour_per_mpx"]) == pytest.approx(counts["tumour"] / (40 * 48 / 1e6), rel=1e-3)
    assert read_image(out / "a_overlay.png").shape == (40, 48, 3)
    assert (out / "summary.csv").is_file()


def test_task_checks(checkpoint):
    with pytest.raises(DataError, match="checkpoint is for the 'panoptic' task; predict needs instance"):
        load_model(checkpoint, task="instance")


def test_coco_panoptic_round_trip(tmp_path, checkpoint):
    """What predict writes converts back (seglab data convert --from coco-panoptic) to the same maps."""
    from seglab.cli import main
    from seglab.data.panoptic import read_classes, read_panoptic
    from seglab.inference.panoptic_writers import write_panoptic_outputs
    from seglab.instances.panoptic import fuse_panoptic

    rng = np.random.default_rng(3)
    inst = np.zeros((24, 30), np.int32)
    inst[2:8, 3:9], inst[12:20, 15:25] = 1, 4
    probs = rng.dirichlet(np.ones(4), size=(24, 30)).transpose(2, 0, 1)
    result = fuse_panoptic(inst, probs, things=[2, 3], stuffs=[0, 1], min_stuff_area=0)
    out = tmp_path / "pred"
    write_panoptic_outputs(out, "x", np.zeros((24, 30, 3), np.uint8), result, CLASSES, file_name="x.png")
    write_image(out / "images" / "x.png", np.zeros((24, 30, 3), np.uint8))
    back = tmp_path / "back"
    assert main(["data", "convert", "--from", "coco-panoptic", str(out / "x_panoptic.json"), "--out", str(back),
                 "--images", str(out / "images")]) == 0
    assert [c.name for c in read_classes(back)] == [c["name"] for c in CLASSES]
    b_inst, b_cls = read_panoptic(back / "labels" / "x_panoptic.tif")
    assert (b_cls == result.classes).all() and ((b_inst > 0) == (inst > 0)).all()


def test_a_slide_is_refused_in_one_line_not_predicted_without_classes(tmp_path, checkpoint):
    from seglab.data.synthetic_slide import write_synthetic_slide

    slide = tmp_path / "s.ome.tif"
    write_synthetic_slide(slide, 256, 256, mpp=0.5, levels=2, tile=64, coverage=0.2)
    with pytest.raises(DataError, match="panoptic checkpoint .* not whole slides"):
        predict_files(load_predictor(checkpoint, tile=32), [slide], tmp_path / "out")
    assert not list((tmp_path / "out").glob("s[._]*"))  # no outputs of the slide
