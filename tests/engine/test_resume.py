"""An interrupted run, resumed, continues exactly as the uninterrupted run would have."""

import copy
from types import SimpleNamespace

import pytest
import torch

from seglab.config import resolve_config
from seglab.engine import trainer as trainer_lib
from seglab.engine.callbacks import Budget
from seglab.engine.trainer import train


class _Budget(Budget):
    """``Budget`` under its own checkpoint key, so that the subclasses below read and write it."""

    @property
    def state_key(self) -> str:
        return "Budget"


class StopAfterTwoSteps(_Budget):
    """The run is cut after step 2 (its checkpoint written), as a kill after that save would."""

    def on_train_batch_end(self, trainer, *args) -> None:
        super().on_train_batch_end(trainer, *args)
        if trainer.global_step >= 2:
            trainer.should_stop = True


class RecordedBudget(_Budget):
    """``Budget`` that remembers itself and, at the end of training, the trained state: weights,
    optimizer and schedule (read in memory: last.ckpt may be older, see the xfail test below)."""

    made: list["RecordedBudget"] = []

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        RecordedBudget.made.append(self)

    def on_train_end(self, trainer, pl_module) -> None:
        self.step = trainer.global_step
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())
        self.schedule = copy.deepcopy(trainer.lr_scheduler_configs[0].scheduler.state_dict())


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_run_resumes_exactly(tiny, tiny_data, tmp_path, monkeypatch, workers):
    """4 steps in one go vs 2 steps, cut, and resumed to 4: same weights (BN statistics included),
    Adam moments and step counts, learning rate and schedule; the resumed budget clock goes on from
    the time the first part used. Four training images, two per batch: an epoch is two steps, so
    the cut falls on an epoch end, where last.ckpt is written. DataLoader workers fetch ahead: the
    resumed run then starts a pass on an iterator that Lightning drops and makes again."""
    values = {**tiny, "data": str(tiny_data), "max_steps": 4, "patches_per_image": 1, "batch_size": 2,
              "overlays": 0, "calibrate": False, "workers": workers}
    monkeypatch.setattr(trainer_lib, "Budget", RecordedBudget)
    RecordedBudget.made.clear()
    assert train(resolve_config(None, {**values, "out": str(tmp_path / "whole")}), plain_log=True).steps == 4

    resumed_dir = tmp_path / "resumed"
    monkeypatch.setattr(trainer_lib, "Budget", StopAfterTwoSteps)
    assert train(resolve_config(None, {**values, "out": str(resumed_dir)}), plain_log=True).steps == 2
    cut = torch.load(resumed_dir / "last.ckpt", weights_only=True)
    assert cut["global_step"] == 2
    monkeypatch.setattr(trainer_lib, "Budget", RecordedBudget)
    resumed = train(resolve_config(None, {**values, "out": str(resumed_dir)}), resume=True, plain_log=True)
    assert resumed.steps == 4

    whole, again = RecordedBudget.made
    assert whole.step == again.step == 4
    assert whole.weights.keys() == again.weights.keys()
    for name, value in whole.weights.items():
        assert torch.equal(again.weights[name], value), name
    assert whole.optimizer["state"].keys() == again.optimizer["state"].keys() and whole.optimizer["state"]
    for index, state in whole.optimizer["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(again.optimizer["state"][index][key], state[key]), (index, key)
    assert [g["lr"] for g in again.optimizer["param_groups"]] == [g["lr"] for g in whole.optimizer["param_groups"]]
    assert again.schedule == whole.schedule

    assert again.elapsed_before == cut["callbacks"]["Budget"]["elapsed"] > 0  # the clock goes on
    assert whole.elapsed_before == 0.0 and again.elapsed() > again.elapsed_before
    assert again.progress() == whole.progress() == 1.0  # 4 of 4 steps


def _epoch_batches(data_module):
    return [(tuple(b["stem"]), b["image"].clone()) for b in data_module.train_dataloader()]


def test_training_data_stream_depends_on_seed_and_epoch_only(tiny_data):
    """Epoch 1 of a data module restored from a checkpoint taken after epoch 0 draws the batches
    of an uninterrupted epoch 1 (order, patches, augmentation); DataLoader workers change nothing."""
    from seglab.data.dataset import find_samples
    from seglab.engine.datamodule import SegmentationDataModule
    from seglab.spec.recipes import make_recipe

    def data_module(workers):
        return SegmentationDataModule(
            train=find_samples(tiny_data), val=[], recipe=make_recipe("instance", "three_class"), patch=32,
            patches_per_image=2, batch_size=2, augment="default", channels=3, workers=workers, seed=5,
        )

    first = data_module(0)
    epochs = [_epoch_batches(first), _epoch_batches(first)]
    assert [s for s, _ in epochs[0]] != [s for s, _ in epochs[1]]  # a new order every epoch
    torch.manual_seed(123)  # the global generator plays no part
    resumed = data_module(0)  # as a run restored after epoch 0 (5 steps of 10 patches, 2 per batch)
    resumed.trainer = SimpleNamespace(global_step=5, world_size=1, global_rank=0)
    with_workers = data_module(2)
    for expected, got in ((epochs[1], _epoch_batches(resumed)), (epochs[0], _epoch_batches(with_workers))):
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, expected, strict=True))


def test_last_checkpoint_holds_the_final_step(tiny, tiny_data, tmp_path):
    """last.ckpt is what --resume continues from: it must hold the last epoch, also when that epoch
    did not improve val/aji (a learning rate of 1e-9 keeps the score of epoch 0)."""
    values = {**tiny, "data": str(tiny_data), "out": str(tmp_path / "run"), "max_steps": 4, "patches_per_image": 1,
              "batch_size": 2, "overlays": 0, "calibrate": False, "lr": 1e-9}
    assert train(resolve_config(None, values), plain_log=True).steps == 4
    assert torch.load(tmp_path / "run" / "best.ckpt", weights_only=True)["global_step"] == 2
    assert torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_keeps_the_earlier_rows_of_metrics_csv(tiny, tiny_data, tmp_path):
    """Lightning's CSVLogger deletes the metrics.csv it finds: a resumed run logged only its own rows."""
    import csv

    values = {**tiny, "data": str(tiny_data), "out": str(tmp_path / "run"), "patches_per_image": 1, "batch_size": 2,
              "overlays": 0, "calibrate": False}

    def rows():
        return list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))

    train(resolve_config(None, {**values, "max_steps": 2}), plain_log=True)
    before = rows()
    assert [r["step"] for r in before if r["val/aji"]] and [r for r in before if r["train/loss_step"]]
    train(resolve_config(None, {**values, "max_steps": 4}), resume=True, plain_log=True)
    after = rows()
    assert after[: len(before)] == before  # the first run's rows, as they were
    validations = [int(r["step"]) for r in after if r["val/aji"]]
    epochs = [int(r["step"]) for r in after if r["train/loss_epoch"]]
    assert len(validations) == len(epochs) == 2 and validations[0] < validations[1]  # one per epoch, both runs
    assert len([r for r in after if r["train/loss_step"]]) == 2
    assert not (tmp_path / "run" / "resumed").exists()
