"""`predict --coco`: one COCO results file per folder run that pycocotools evaluates, with scores."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from seglab.data.coco import instances_to_coco_annotations
from seglab.data.io import write_image
from seglab.data.synthetic import synth_tile
from seglab.data.targets import three_class_targets
from seglab.inference import Predictor, predict_files
from seglab.inference.runner import Progress
from seglab.inference.writers import instance_scores
from seglab.spec.checkpoint import make_meta

SIZES = {"a": 48, "b": 64, "c": 40}


class TruthPredictor:
    """Returns each image's ground-truth map: prediction == ground truth, no probabilities."""

    task, method = "instance", "three_class"

    def __init__(self, truths):
        self.truths = truths

    def predict_source(self, source, on_tiles=None):
        return self.truths[Path(source.path).stem]


@pytest.fixture
def folder(tmp_path):
    images, truths = tmp_path / "images", {}
    for i, (stem, size) in enumerate(SIZES.items()):
        image, truths[stem] = synth_tile(size, seed=10 + i)
        write_image(images / f"{stem}.png", image)
    return images, truths


def quiet():
    return contextlib.redirect_stdout(io.StringIO())  # COCOeval prints its table


def ground_truth(out_dir, truths):
    """A COCO ground truth from the truth maps, on coco_images.json's image ids."""
    doc = json.loads((out_dir / "coco_images.json").read_text())
    anns = []
    for image in doc["images"]:
        inst = truths[Path(image["file_name"]).stem]
        anns += instances_to_coco_annotations(inst, image_id=image["id"], first_id=len(anns) + 1)
    gt = COCO()
    gt.dataset = {**doc, "annotations": anns}
    with quiet():
        gt.createIndex()
    return gt


def evaluate(gt, results_path):
    with quiet():
        dt = gt.loadRes(str(results_path))
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def run(predictor, images, out_dir, **kwargs):
    inputs = sorted(images.iterdir())
    return predict_files(predictor, inputs, out_dir, coco=True, workers=0, progress=Progress(len(inputs), io.StringIO()),
                         **kwargs)


def test_folder_results_evaluate_to_ap_one_when_prediction_is_truth(folder, tmp_path):
    images, truths = folder
    out = tmp_path / "out"
    run(TruthPredictor(truths), images, out)
    doc = json.loads((out / "coco_images.json").read_text())
    assert doc["images"] == [{"id": i, "file_name": f"{s}.png", "height": n, "width": n}
                             for i, (s, n) in enumerate(SIZES.items(), 1)]
    assert doc["categories"] == [{"id": 1, "name": "nucleus"}]
    results = json.loads((out / "coco_results.json").read_text())
    assert isinstance(results, list) and {r["image_id"] for r in results} == {1, 2, 3}  # unique ids, not all 1
    assert len(results) == sum(len(np.unique(t)) - 1 for t in truths.values())
    for r in results:
        assert set(r) == {"image_id", "category_id", "segmentation", "score", "bbox", "area"}
        assert r["score"] == 1.0 and r["category_id"] == 1  # no probabilities: score 1.0
    stats = evaluate(ground_truth(out, truths), out / "coco_results.json")
    assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)  # AP, AP50
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic: no temp files left


def class_image(truth):
    """One-hot 3-class image, each nucleus at its own brightness: a 1x1 conv reads it back with a
    confidence that differs from nucleus to nucleus."""
    level = np.where(truth > 0, 90 + (truth * 37) % 160, 255).astype(np.uint8)
    return np.eye(3, dtype=np.uint8)[three_class_targets(truth)] * level[..., None]


def test_scores_are_the_mean_foreground_probability(folder, tmp_path):
    images, truths = folder
    for stem in SIZES:
        write_image(images / f"{stem}.png", class_image(truths[stem]))
    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.copy_(3 * torch.eye(3).view(3, 3, 1, 1))
        net.bias.zero_()
    meta = make_meta(task="instance", model_name="unet", model_kwargs={}, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}})
    predictor = Predictor(net, meta, tile=32, block=40, margin=24)
    out = tmp_path / "out"
    run(predictor, images, out)
    results = json.loads((out / "coco_results.json").read_text())
    for image in json.loads((out / "coco_images.json").read_text())["images"]:
        stem = Path(image["file_name"]).stem
        labels = tifffile.imread(out / f"{stem}_instances.tif").astype(np.int64)
        probs = predictor.predict_probs(class_image(truths[stem]))
        fg = 1 - probs[0]  # three_class: the foreground is interior + boundary
        mine = sorted(r["score"] for r in results if r["image_id"] == image["id"])
        expected = sorted(fg[labels == i].mean() for i in np.unique(labels) if i)
        assert np.allclose(mine, expected, atol=1e-3) and 0.5 < min(mine) < max(mine) < 1.0
    assert evaluate(ground_truth(out, truths), out / "coco_results.json")[1] > 0.9  # AP50


def test_instance_scores_by_rows():
    labels = np.array([[0, 1, 1], [2, 2, 1], [2, 0, 0]])
    fg = np.array([[0.1, 0.9, 0.7], [0.4, 0.6, 0.8], [0.5, 0.0, 0.0]], np.float32)
    assert instance_scores(labels, fg, rows=1) == pytest.approx({1: 0.8, 2: 0.5})


def test_skip_existing_reassembles_the_folder_files_and_failures_are_left_out(folder, tmp_path):
    images, truths = folder
    out = tmp_path / "out"
    run(TruthPredictor(truths), images, out)
    first = (out / "coco_results.json").read_text(), (out / "coco_images.json").read_text()
    (out / "b.geojson").unlink()  # as if interrupted on b
    (out / "coco_results.json").unlink()
    before = (out / "a_coco_part.json").stat().st_mtime_ns
    run(TruthPredictor(truths), images, out, skip_existing=True)
    assert (out / "a_coco_part.json").stat().st_mtime_ns == before  # a's part reused
    assert ((out / "coco_results.json").read_text(), (out / "coco_images.json").read_text()) == first
    (images / "b.png").write_bytes(b"not a png")
    errors = []
    run(TruthPredictor(truths), images, out, on_error=errors.append)
    assert len(errors) == 1
    doc = json.loads((out / "coco_images.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == ["a.png", "c.png"] and [i["id"] for i in doc["images"]] == [1, 2]
    assert {r["image_id"] for r in json.loads((out / "coco_results.json").read_text())} == {1, 2}
