"""Decoder calibration: candidates, the choice equals scoring every value by hand, ties keep the
current value, a best value on the grid's edge is searched past (within the option's range), and a
training run writes the choice into best.ckpt (unless the user set it)."""

import numpy as np
import pytest

from seglab.config import resolve_config
from seglab.engine.calibrate import GRIDS, MAX_STEPS, RANGES, candidates, choose, grid
from seglab.engine.trainer import train
from seglab.instances import decode
from seglab.metrics import aji
from seglab.spec.checkpoint import load_checkpoint


def test_candidates_put_the_current_value_first():
    assert candidates("three_class_watershed", {}) == ("h", [1.5, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0])
    assert candidates("three_class_watershed", {"h": 1.75})[1][0] == 1.75
    threshold = {"markers": "threshold"}  # the threshold rule calibrates its threshold
    assert candidates("three_class_watershed", threshold) == ("interior_threshold", [0.5, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert candidates("three_class_watershed", {**threshold, "interior_threshold": 0.45})[1][0] == 0.45
    option, values = candidates("embedding_meanshift", {"delta_v": 0.4})  # bandwidth = 2 delta_v
    assert option == "bandwidth" and values == pytest.approx([0.8, 0.6, 1.0, 1.2])
    assert candidates("embedding_meanshift", {"bandwidth": 0.7})[1] == pytest.approx([0.7, 0.525, 0.875, 1.05])
    assert candidates("maskrcnn", {}) is None
    assert set(GRIDS) == {"three_class_watershed", "distance_watershed", "embedding_meanshift", "embedding_seeds"}


def _faint_interiors(seed):
    """3-class probabilities whose nucleus interiors reach only 0.4: markers need a lower threshold."""
    from seglab.data.synthetic import synth_tile
    from seglab.data.targets import three_class_targets

    inst = synth_tile(64, seed=seed)[1]
    target = np.asarray(three_class_targets(inst))
    probs = np.zeros((3, *inst.shape), np.float32)
    probs[0] = np.where(target == 0, 1.0, np.where(target == 1, 0.3, 0.0))
    probs[1] = np.where(target == 1, 0.4, 0.0)
    probs[2] = np.where(target == 2, 1.0, np.where(target == 1, 0.3, 0.0))
    return probs, inst


def test_choice_equals_scoring_every_value_by_hand():
    data = [_faint_interiors(s) for s in range(3)]
    stacks, truths = [d[0] for d in data], [d[1] for d in data]
    kwargs = {"markers": "threshold"}
    record = choose("three_class_watershed", kwargs, stacks, truths)
    assert set(candidates("three_class_watershed", kwargs)[1]) <= set(record["scores"])
    by_hand = {}
    for value in record["scores"]:  # the grid and whatever the search past its edge tried
        preds = [decode("three_class_watershed", s, markers="threshold", interior_threshold=value) for s in stacks]
        by_hand[value] = float(np.mean([aji(t, p) for t, p in zip(truths, preds, strict=True)]))
    assert record["scores"] == pytest.approx(by_hand)
    assert record["value"] == 0.3 and by_hand[0.3] > by_hand[0.5] + 0.1  # 0.5 finds no markers
    assert record["option"] == "interior_threshold" and record["images"] == 3


def test_ties_keep_the_current_value():
    stack = np.zeros((3, 16, 16), np.float32)
    stack[0] = 1.0  # all background: every threshold scores the same
    truth = np.zeros((16, 16), np.int32)
    assert choose("three_class_watershed", {"h": 1.75}, [stack], [truth])["value"] == 1.75
    kwargs = {"markers": "threshold", "interior_threshold": 0.6}
    assert choose("three_class_watershed", kwargs, [stack], [truth])["value"] == 0.6


def _peaked(monkeypatch, peak, slope=1.0):
    """Replace decode by one whose AJI falls linearly with ``|value - peak|`` (a pixel survives
    while its rank, a fixed shuffle of evenly spaced values in [0, 1), exceeds
    ``slope * |value - peak|``); returns stacks and truths."""
    import seglab.instances

    def fake(name, stack, **kwargs):
        value = kwargs[candidates(name, kwargs)[0]]
        truth, rank = stack
        return np.where(rank > slope * abs(value - peak), truth, 0).astype(np.int32)

    monkeypatch.setattr(seglab.instances, "decode", fake)
    truth = np.repeat(np.arange(1, 5), 4096).reshape(128, 128)
    rank = np.random.default_rng(0).permutation(truth.size).reshape(truth.shape) / truth.size
    return [np.stack([truth, rank])], [truth]


def test_an_optimum_past_the_grid_edge_is_found(monkeypatch):
    stacks, truths = _peaked(monkeypatch, 0.985)  # the score rises all the way past 0.95
    threshold = {"markers": "threshold"}
    record = choose("three_class_watershed", threshold, stacks, truths)
    grid = candidates("three_class_watershed", threshold)[1]
    assert record["value"] > max(grid) and abs(record["value"] - 0.985) < 0.005
    assert record["scores"][record["value"]] > record["scores"][max(grid)]
    assert all(0.0 < v < 1.0 for v in record["scores"])
    assert len(record["scores"]) <= len(grid) + MAX_STEPS + 2
    # the lower edge too, towards 0
    stacks, truths = _peaked(monkeypatch, 0.08)
    assert abs(choose("three_class_watershed", threshold, stacks, truths)["value"] - 0.08) < 0.01


def test_a_bounded_option_never_reaches_its_bound(monkeypatch):
    stacks, truths = _peaked(monkeypatch, 1.5, slope=0.5)  # best at the bound and beyond
    for decoder, kwargs in (("three_class_watershed", {"markers": "threshold"}), ("distance_watershed", {}),
                            ("embedding_seeds", {})):
        record = choose(decoder, kwargs, stacks, truths)
        assert grid(decoder, kwargs)[3] == (0.0, 1.0)
        assert 0.97 < record["value"] < 1.0 and all(0.0 < v < 1.0 for v in record["scores"])


def test_an_unbounded_option_steps_geometrically(monkeypatch):
    stacks, truths = _peaked(monkeypatch, 4.0, slope=0.1)  # bandwidth grid ends at 1.5 x 1.0
    record = choose("embedding_meanshift", {"bandwidth": 1.0}, stacks, truths)
    tried = sorted(v for v in record["scores"] if v > 1.5)
    assert abs(record["value"] - 4.0) < 0.5
    assert len(tried) <= MAX_STEPS + 2 and tried[-1] > 4.0
    stacks, truths = _peaked(monkeypatch, 9.0, slope=0.05)  # the 3-class h (log-odds) grid ends at 4
    assert RANGES["three_class_watershed"] == (0.0, None)
    assert abs(choose("three_class_watershed", {}, stacks, truths)["value"] - 9.0) < 1.0


def test_an_interior_optimum_is_unchanged(monkeypatch):
    stacks, truths = _peaked(monkeypatch, 0.7)
    threshold = {"markers": "threshold"}
    record = choose("three_class_watershed", threshold, stacks, truths)
    assert record["value"] == 0.7
    assert list(record["scores"]) == candidates("three_class_watershed", threshold)[1]  # nothing extra tried
    stacks, truths = _peaked(monkeypatch, 2.0, slope=0.1)
    record = choose("three_class_watershed", {}, stacks, truths)
    assert record["value"] == 2.0 and list(record["scores"]) == candidates("three_class_watershed", {})[1]


def test_ties_on_the_edge_keep_the_current_value():
    stack = np.zeros((3, 16, 16), np.float32)
    stack[0] = 1.0  # all background: every threshold scores the same
    truth = np.zeros((16, 16), np.int32)
    record = choose("three_class_watershed", {"markers": "threshold", "interior_threshold": 0.95}, [stack], [truth])
    assert record["value"] == 0.95
    assert choose("three_class_watershed", {"h": 4.0}, [stack], [truth])["value"] == 4.0


def test_training_writes_the_choice_into_best_ckpt(tiny, tiny_data, tmp_path, capsys):
    config = resolve_config(None, {**tiny, "data": str(tiny_data), "out": str(tmp_path / "a"), "max_steps": 2})
    result = train(config, plain_log=True)
    decoder = load_checkpoint(result.best_checkpoint)["seglab"]["decoder"]
    record = decoder["calibration"]
    assert record["option"] == "h" and record["images"] >= 1
    assert decoder["kwargs"]["h"] == record["value"]
    assert record["scores"][str(record["value"])] == max(record["scores"].values())
    assert "decoder calibrated on" in capsys.readouterr().out
    # an option the user set is left alone; calibrate: false turns it off
    for extra in ({"decoder_kwargs": {"h": 2.5}}, {"decoder_kwargs": {"markers": "threshold", "interior_threshold": 0.45}},
                  {"calibrate": False}):
        config = resolve_config(None, {**tiny, "data": str(tiny_data), "out": str(tmp_path / "b"), "max_steps": 1, **extra})
        decoder = load_checkpoint(train(config, plain_log=True).best_checkpoint)["seglab"]["decoder"]
        assert "calibration" not in decoder
        chosen = {k: v for k, v in decoder["kwargs"].items() if k != "min_size"}  # min_size: from object sizes
        assert chosen == extra.get("decoder_kwargs", {})
