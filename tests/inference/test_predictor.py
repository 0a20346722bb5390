"""Predictor: checkpoint round trip, preprocessing, channel rules, TTA, devices, predict -> metrics."""

import numpy as np
import pytest
import torch

from seglab.data.synthetic import synth_tile
from seglab.data.targets import three_class_targets
from seglab.errors import DataError, SeglabError
from seglab.inference import ArraySource, Predictor, outputs_to_probs
from seglab.inference.tta import DIHEDRAL
from seglab.metrics import aji, panoptic_quality
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}
PRE = {"in_channels": 3, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def meta(task="instance", pre=PRE, kwargs=KW, method="three_class"):
    decoder = {"name": "three_class_watershed", "kwargs": {"min_size": 3}} if task == "instance" else None
    return make_meta(task=task, model_name="unet", model_kwargs=kwargs, preprocessing=pre, decoder=decoder,
                     method=method, patch_size=32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet", **KW).eval()
    path = tmp_path_factory.mktemp("ckpt") / "m.ckpt"
    save_checkpoint(path, model, meta())
    return path, model


def reference_probs(model, image):
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor(PRE["mean"]).view(3, 1, 1)) / torch.tensor(PRE["std"]).view(3, 1, 1)
    with torch.no_grad():
        return model(x[None]).softmax(1)[0].numpy()


def test_checkpoint_round_trip(ckpt):
    path, model = ckpt
    image = synth_tile(40, seed=0)[0]
    predictor = Predictor.from_checkpoint(path)
    assert np.allclose(predictor.predict_probs(image), reference_probs(model, image), atol=1e-5)
    out = predictor.predict(image)
    assert out["instances"].shape == (40, 40) and out["instances"].dtype == np.int32


def test_grayscale_rgba_16bit_inputs(ckpt):
    path, model = ckpt
    predictor = Predictor.from_checkpoint(path)
    rgb = synth_tile(36, seed=1)[0]
    gray = rgb[..., :1]
    ref_gray = reference_probs(model, np.repeat(gray, 3, axis=-1))
    assert np.allclose(predictor.predict_probs(gray), ref_gray, atol=1e-5)
    assert np.allclose(predictor.predict_probs(gray[..., 0]), ref_gray, atol=1e-5)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    ref = reference_probs(model, rgb)
    assert np.allclose(predictor.predict_probs(rgba), ref, atol=1e-5)
    assert np.allclose(predictor.predict_probs(rgb.astype(np.uint16) * 257), ref, atol=1e-5)


def test_wrong_channel_count_is_one_line(tmp_path):
    torch.manual_seed(0)
    one = {**KW, "in_channels": 1}
    path = tmp_path / "gray.ckpt"
    save_checkpoint(path, create_model("unet", **one), meta(pre={"in_channels": 1, "mean": [0.5], "std": [0.2]}, kwargs=one))
    predictor = Predictor.from_checkpoint(path)
    with pytest.raises(DataError, match=r"img\.png: image has 3 channels but the model expects 1") as err:
        from seglab.inference.source import ArraySource

        predictor.predict(ArraySource(np.zeros((8, 8, 3), np.uint8), "img.png"))
    assert "\n" not in str(err.value)


def test_bad_checkpoints_are_one_line(tmp_path, ckpt):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(ckpt[0].read_bytes()[:300])
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, other)
    unknown_task = tmp_path / "depth.ckpt"
    save_checkpoint(unknown_task, create_model("unet", **KW), {**meta(), "task": "depth"})
    for path, text in [(damaged, "damaged"), (other, "not a seglab checkpoint"), (unknown_task, "'depth' task"),
                       (tmp_path / "missing.ckpt", "not found")]:
        with pytest.raises(DataError, match=text) as err:
            Predictor.from_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="'instance' task; predict needs semantic"):
        Predictor.from_checkpoint(ckpt[0], task="semantic")


def test_bad_options_are_refused(ckpt):
    from seglab.errors import ConfigError

    with pytest.raises(ConfigError, match="gaussian"):
        Predictor.from_checkpoint(ckpt[0], blend="box")
    with pytest.raises(SeglabError, match="overlap 1.0"):
        Predictor.from_checkpoint(ckpt[0], overlap=1.0)


def test_cuda_unavailable_is_refused(ckpt):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SeglabError, match="CUDA is not available"):
        Predictor.from_checkpoint(ckpt[0], device="cuda")


def test_tta_averages_the_eight_inverse_transformed_predictions(ckpt):
    path, model = ckpt
    image = synth_tile(32, seed=2)[0]
    plain = Predictor.from_checkpoint(path)
    tta = Predictor.from_checkpoint(path, tta=True).predict_probs(image)
    x = plain.preprocess(image)[None]
    expected = []
    with torch.no_grad():
        for k, flip in DIHEDRAL:  # slow and obvious: transform the image, predict, undo on the output
            t = torch.rot90(x, k, (2, 3))
            t = t.flip(3) if flip else t
            p = model(t).softmax(1)
            p = p.flip(3) if flip else p
            expected.append(torch.rot90(p, -k, (2, 3)))
    assert np.allclose(tta, torch.stack(expected).mean(0)[0].numpy(), atol=1e-5)
    assert not np.allclose(tta, plain.predict_probs(image), atol=1e-4)


def test_tiled_prediction_matches_monai(ckpt):
    from monai.inferers import sliding_window_inference

    path, model = ckpt
    image = synth_tile(72, seed=4)[0]
    predictor = Predictor.from_checkpoint(path, tile=32, overlap=0.25, batch_size=4)
    x = predictor.preprocess(image)[None]
    with torch.no_grad():
        ref = sliding_window_inference(x, 32, 4, lambda t: model(t).softmax(1), overlap=0.25, mode="gaussian")[0]
    assert np.allclose(predictor.predict_probs(image), ref.numpy(), atol=1e-4)


def test_decode_worker_process_gives_the_same_map(ckpt):
    image = synth_tile(96, seed=6)[0]
    inline = Predictor.from_checkpoint(ckpt[0], tile=32, block=40, margin=24).predict_source(
        ArraySource(image))
    pooled = Predictor.from_checkpoint(ckpt[0], tile=32, block=40, margin=24, decode_workers=1).predict_source(
        ArraySource(image))
    assert np.array_equal(inline, pooled)


def test_distance_outputs_and_semantic_task():
    logits = torch.randn(2, 2, 5, 5)
    dist = torch.randn(2, 1, 5, 5)
    probs = outputs_to_probs({"logits": logits, "distance": dist}, "distance")
    assert torch.allclose(probs[:, 0], logits.softmax(1)[:, 1]) and torch.allclose(probs[:, 1], dist.sigmoid()[:, 0])
    emb, seed = torch.randn(2, 4, 5, 5), torch.randn(2, 1, 5, 5)
    stack = outputs_to_probs({"logits": logits, "embedding": emb, "seediness": seed}, "seeds")
    expected = torch.cat([logits.softmax(1)[:, 1:2], seed.sigmoid(), emb], 1)  # the engine's order
    assert torch.allclose(stack, expected)
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 1)
    pre = {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    sem = Predictor(net, meta(task="semantic", pre=pre), tile=16)
    image = synth_tile(24, seed=5)[0]
    out = sem.predict(image)
    assert out["classes"].dtype == np.uint8 and np.array_equal(out["classes"], out["probs"].argmax(0))


def oracle_model():
    """1x1 conv reading a one-hot class image: logits = 20 * one-hot (a perfect network)."""
    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.copy_(20 * torch.eye(3).view(3, 3, 1, 1))
        net.bias.zero_()
    return net


def test_predict_then_metrics_round_trip():
    _, gt = synth_tile(96, seed=3)
    classes = three_class_targets(gt)
    image = (np.eye(3, dtype=np.uint8)[classes] * 255).astype(np.uint8)  # class c -> channel c bright
    pre = {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    predictor = Predictor(oracle_model(), meta(pre=pre), tile=32, block=40, margin=24)
    pred = predictor.predict(image)["instances"]
    pq = panoptic_quality(gt, pred)
    assert pq["fp"] == 0 and pq["fn"] == 0  # every nucleus found once, nothing extra
    # one-hot maps leave the watershed ties on the boundary between touching nuclei
    assert aji(gt, pred) > 0.98 and pq["sq"] > 0.98

