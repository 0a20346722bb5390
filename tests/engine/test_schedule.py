"""The learning-rate schedule follows the share of the budget, whatever the budget's unit."""

import math

import pytest
import torch

from seglab.engine.callbacks import Budget
from seglab.engine.module import SegmentationModule
from seglab.engine.optim import lr_factor
from seglab.spec.recipes import make_recipe


def _module(schedule: str, progress: float) -> SegmentationModule:
    meta = {"preprocessing": {"mean": [0.5], "std": [0.25]}, "decoder": None}
    return SegmentationModule(
        model=torch.nn.Conv2d(1, 3, 1), recipe=make_recipe("instance", "three_class"),
        loss=torch.nn.CrossEntropyLoss(), meta=meta, schedule=schedule, warmup=0.1,
        progress=lambda: progress,
    )


@pytest.mark.parametrize(
    ("schedule", "progress", "expected"),
    [
        ("constant", 0.7, 1.0),
        ("cosine", 0.0, 1.0),
        ("cosine", 0.5, 0.02 + 0.98 * 0.5),
        ("cosine", 1.0, 0.02),
        ("onecycle", 0.0, 0.1),
        ("onecycle", 0.05, 0.55),
        ("onecycle", 0.1, 1.0),
        ("onecycle", 0.55, 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * 0.5))),
    ],
)
def test_lr_factor(schedule, progress, expected):
    assert lr_factor(progress, schedule=schedule, warmup=0.1) == pytest.approx(expected)


def test_module_schedule_reads_progress_at_every_step():
    share = {"now": 0.0}
    module = _module("onecycle", 0.0)
    module.progress = lambda: share["now"]
    config = module.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    share["now"] = 0.05
    config["optimizer"].step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(module.lr * 0.55)


def test_budget_progress_takes_the_largest_share_and_survives_resume():
    budget = Budget(max_steps=100, minutes=1000.0)
    budget._step = 25
    assert budget.progress() == pytest.approx(0.25, abs=1e-3)
    budget.load_state_dict({"elapsed": 60_000.0 * 0.9, "val_seconds": 3.0})
    assert budget.progress() == pytest.approx(0.9, abs=1e-3)
    assert budget.state_dict()["val_seconds"] == 3.0


def test_nan_loss_names_the_step():
    from seglab.errors import SeglabError

    module = _module("constant", 0.0)
    batch = {"image": torch.full((1, 1, 8, 8), float("nan")), "three_class": torch.zeros(1, 8, 8, dtype=torch.long)}
    with pytest.raises(SeglabError, match="at step 0"):
        module.training_step(batch, 0)
