"""Decoder calibration: candidates, the choice equals scoring every value by hand, ties keep the
current value, and a training run writes the choice into best.ckpt (unless the user set it)."""

import numpy as np
import pytest

from seglab.config import resolve_config
from seglab.engine.calibrate import GRIDS, candidates, choose
from seglab.engine.checkpoint import load_checkpoint
from seglab.engine.trainer import train
from seglab.instances import decode
from seglab.metrics import aji


def test_candidates_put_the_current_value_first():
    assert candidates("three_class_watershed", {}) == ("interior_threshold", [0.5, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert candidates("three_class_watershed", {"interior_threshold": 0.45})[1][0] == 0.45
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
    record = choose("three_class_watershed", {}, stacks, truths)
    by_hand = {}
    for value in candidates("three_class_watershed", {})[1]:
        preds = [decode("three_class_watershed", s, interior_threshold=value) for s in stacks]
        by_hand[value] = float(np.mean([aji(t, p) for t, p in zip(truths, preds, strict=True)]))
    assert record["scores"] == pytest.approx(by_hand)
    assert record["value"] == 0.3 and by_hand[0.3] > by_hand[0.5] + 0.1  # 0.5 finds no markers
    assert record["option"] == "interior_threshold" and record["images"] == 3


def test_ties_keep_the_current_value():
    stack = np.zeros((3, 16, 16), np.float32)
    stack[0] = 1.0  # all background: every threshold scores the same
    truth = np.zeros((16, 16), np.int32)
    assert choose("three_class_watershed", {"interior_threshold": 0.6}, [stack], [truth])["value"] == 0.6


def test_training_writes_the_choice_into_best_ckpt(tiny, tiny_data, tmp_path, capsys):
    config = resolve_config(None, {**tiny, "data": str(tiny_data), "out": str(tmp_path / "a"), "max_steps": 2})
    result = train(config, plain_log=True)
    decoder = load_checkpoint(result.best_checkpoint)["seglab"]["decoder"]
    record = decoder["calibration"]
    assert record["option"] == "interior_threshold" and record["images"] >= 1
    assert decoder["kwargs"]["interior_threshold"] == record["value"]
    assert record["scores"][str(record["value"])] == max(record["scores"].values())
    assert "decoder calibrated on" in capsys.readouterr().out
    # an option the user set is left alone; calibrate: false turns it off
    for extra in ({"decoder_kwargs": {"interior_threshold": 0.45}}, {"calibrate": False}):
        config = resolve_config(None, {**tiny, "data": str(tiny_data), "out": str(tmp_path / "b"), "max_steps": 1, **extra})
        decoder = load_checkpoint(train(config, plain_log=True).best_checkpoint)["seglab"]["decoder"]
        assert "calibration" not in decoder
        assert decoder["kwargs"] == extra.get("decoder_kwargs", {})
