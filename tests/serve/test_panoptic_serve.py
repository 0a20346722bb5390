"""A panoptic checkpoint served: every instance carries its type, as `seglab predict` writes it."""

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from seglab.inference import load_predictor
from seglab.inference.panoptic_writers import predict_panoptic
from seglab.inference.source import ArraySource
from seglab.models import create_model
from seglab.serve.app import create_app
from seglab.spec.checkpoint import make_meta, save_checkpoint

CLASSES = [{"name": "background", "thing": False, "color": [235, 235, 235]},
           {"name": "tumour", "thing": True, "color": [228, 26, 28]},
           {"name": "lymphocyte", "thing": True, "color": [55, 126, 184]}]
KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4, "aux_heads": {"classes": 3}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet", **KW)
    with torch.no_grad():  # a constant instance head (background = interior, no boundary): some instances
        model.heads.convs["logits"].weight.zero_()
        model.heads.convs["logits"].bias.copy_(torch.tensor([0.0, 0.0, -4.0]))
    meta = make_meta(task="panoptic", model_name="unet", model_kwargs=KW, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}}, patch_size=32)
    meta["panoptic"] = {"classes": CLASSES, "min_stuff_area": 0}
    path = tmp_path_factory.mktemp("pan") / "p.ckpt"
    save_checkpoint(path, model, meta)
    predictor = load_predictor(path, tile=32)
    with TestClient(create_app(predictor, checkpoint=path), raise_server_exceptions=False) as client:
        yield predictor, client


def test_instances_carry_their_type(served):
    predictor, client = served
    image = np.full((48, 48, 3), 230, np.uint8)
    image[8:20, 8:20] = image[28:40, 26:40] = 40
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    truth = predict_panoptic(predictor, ArraySource(image))
    assert truth.instance_class, "the fixture must give instances"
    names = {i: CLASSES[c]["name"] for i, c in truth.instance_class.items()}

    body = client.post("/predict", files={"file": ("x.png", buf.getvalue(), "image/png")}).json()
    assert {i["id"]: i["class"] for i in body["instances"]} == names
    assert body["counts"] == {n: list(names.values()).count(n) for n in set(names.values())}
    by_name = {c["name"]: c["color"] for c in CLASSES}
    assert all(i["color"] == by_name[i["class"]] for i in body["instances"])
    assert all(i["score"] == pytest.approx(truth.type_prob[i["id"]], abs=1e-4) for i in body["instances"])
    geo = client.post("/predict", params={"format": "geojson"}, files={"file": ("x.png", buf.getvalue(), "image/png")}).json()
    assert {f["properties"]["id"]: f["properties"]["classification"]["name"] for f in geo["features"]} == names
    assert client.get("/model").json()["classes"] == [c["name"] for c in CLASSES]
