"""SegmentationModule validation: data-set scores are means over images, each image counted once."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_validation_run.py")


def test_ddp_validation_scores_every_image_once(tmp_path):
    """Two gloo ranks validate five images: Lightning's DistributedSampler pads rank 1 with image 0
    again; the logged val/aji and val/pq must still be the plain means over the five images."""
    from seglab.data.synthetic import write_synthetic_dataset

    stems = write_synthetic_dataset(tmp_path / "data", n=5, size=48, seed=3)
    out = tmp_path / "scores.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "data"), str(out)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sync_dist" not in proc.stderr  # Lightning's advice for epoch-level values under DDP
    print(f"ddp validation run: {time.monotonic() - start:.1f} s")
    result = json.loads(out.read_text())
    per_image = result["per_image"]
    assert result["world_size"] == 2 and sorted(per_image) == sorted(stems)
    for key in ("aji", "pq"):
        scores = [per_image[s][key] for s in stems]
        assert len({round(v, 6) for v in scores}) > 1, f"{key}: the images must score differently"
        plain = sum(scores) / len(scores)
        counted_twice = (sum(scores) + scores[0]) / (len(scores) + 1)  # the padded sampler's mean
        assert abs(counted_twice - plain) > 1e-3
        assert result["logged"][f"val/{key}"] == pytest.approx(plain, abs=1e-6), key


class _Ranks:
    """Stands in for a module under DDP: ``gather_over_ranks`` returns every rank's records."""

    def __init__(self, per_rank):
        self.per_rank = per_rank


def test_once_per_image_drops_the_padded_repeats(monkeypatch):
    """Five images on two ranks, as DistributedSampler(shuffle=False) deals them: rank 0 gets
    0, 2, 4 and rank 1 gets 1, 3 and image 0 again; the mean is over the five images."""
    from seglab.engine import module as module_lib

    scores = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 1.0}
    stems = sorted(scores)
    order = [*stems, stems[0]]  # padded to 6
    ranks = [[{"stem": s, "aji": scores[s], "pq": scores[s]} for s in order[r::2]] for r in range(2)]
    monkeypatch.setattr(module_lib, "gather_over_ranks", lambda module, obj: module.per_rank)
    records = module_lib.once_per_image(_Ranks(ranks), ranks[0])
    assert sorted(r["stem"] for r in records) == stems
    logged = {}
    module_lib.log_instance_scores(type("M", (), {"log": lambda self, k, v, **kw: logged.__setitem__(k, v)})(), records)
    assert logged["val/aji"] == pytest.approx(sum(scores.values()) / 5)  # 0.4, not 2.1 / 6 = 0.35
    # records without a stem (a loader without "stem") are never merged
    anonymous = [[{"stem": None, "aji": 0.5}], [{"stem": None, "aji": 0.5}]]
    assert len(module_lib.once_per_image(_Ranks(anonymous), anonymous[0])) == 2


def test_semantic_validation_pools_unique_images(monkeypatch):
    """The semantic task sums one confusion matrix per image; a padded repeat adds nothing."""
    import torch

    from seglab.engine import module as module_lib
    from seglab.engine.module import SegmentationModule
    from seglab.losses import CrossEntropyLoss
    from seglab.spec.recipes import make_recipe

    recipe = make_recipe("semantic", None, 2)
    meta = {"preprocessing": {"mean": [0.0], "std": [1.0]}, "decoder": None}
    model = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():  # class 1 where the image is bright
        model.weight.copy_(torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1))
        model.bias.zero_()
    module = SegmentationModule(model=model, recipe=recipe, meta=meta,
                                loss=CrossEntropyLoss(mode="multiclass", ignore_index=255))
    logged = {}
    module.log = lambda key, value, **kw: logged.__setitem__(key, value)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # top half class 1
    right = target[:, None].float()  # predicted exactly: IoU 1, 1
    wrong = torch.ones(1, 1, 4, 4)  # class 1 everywhere: IoU 0 and 0.5
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step({"image": right, "semantic": target, "stem": ["a"]}, 0)
        module.validation_step({"image": wrong, "semantic": target, "stem": ["b"]}, 1)
    rank0 = list(module._val_records)
    rank1 = [dict(rank0[1])]  # rank 1 scored image "b" again (padding)
    monkeypatch.setattr(module_lib, "gather_over_ranks", lambda m, obj: [rank0, rank1])
    module.on_validation_epoch_end()
    # pooled over a and b once: class 0 IoU 8/16, class 1 IoU 16/24 (a+2b would give 8/24, 24/40)
    assert logged["val/miou"] == pytest.approx((8 / 16 + 16 / 24) / 2)
    assert logged["val/loss"] == pytest.approx((rank0[0]["loss"] + rank0[1]["loss"]) / 2)
