"""Lightning callbacks and plugins seglab training relies on.

``Budget``             the run's budget (minutes, epochs or steps) as one progress share in
                       [0, 1] for the learning-rate schedule; stops at the time budget, leaving
                       room for the last validation, and survives ``--resume``.
``Throughput``         images per second and ETA in the progress bar, or plain log lines when
                       stderr is not a terminal.
``AtomicCheckpointIO`` checkpoints written to a temporary file and renamed, so a kill during a
                       save leaves the previous ``last.ckpt`` intact.
``WeightEMA``          an exponential moving average of the weights, validated and saved in
                       their place (checkpoints' ``state_dict``), training weights kept for
                       ``--resume``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seglab.fileio import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(os.fspath(path), durable=True) as tmp:
            torch.save(checkpoint, tmp)


class Budget(L.Callback):
    """Track the share of the training budget used; stop when the time budget runs out.

    Args:
        minutes: wall-clock budget for training (validation included), or None.
        max_steps: step budget, or None.
        epochs: epoch budget, or None (uses ``trainer.estimated_stepping_batches``).
    """

    def __init__(self, *, minutes: float | None = None, max_steps: int | None = None, epochs: int | None = None):
        self.seconds = None if minutes is None else 60.0 * minutes
        self.max_steps = max_steps
        self.epochs = epochs
        self.elapsed_before = 0.0  # seconds spent in earlier (resumed) runs
        self._start: float | None = None
        self._val_seconds = 0.0
        self._val_start = 0.0
        self._total_steps: float | None = None
        self._step = 0

    def elapsed(self) -> float:
        return self.elapsed_before + (0.0 if self._start is None else time.monotonic() - self._start)

    def progress(self) -> float:
        shares = []
        if self.seconds:
            shares.append(self.elapsed() / self.seconds)
        if self.max_steps:
            shares.append(self._step / self.max_steps)
        if self._total_steps:
            shares.append(self._step / self._total_steps)
        return min(1.0, max(shares, default=0.0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._step = trainer.global_step
        if self.epochs is not None:
            total = trainer.estimated_stepping_batches
            self._total_steps = float(total) if total != float("inf") else None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._step = trainer.global_step
        out_of_time = self.seconds is not None and self.elapsed() + self._val_seconds >= self.seconds
        out_of_steps = self.max_steps is not None and self._step >= self.max_steps
        # every rank must stop at the same step (one rank alone in validation would hang the
        # others in their next all-reduce): any rank out of budget stops them all
        if trainer.strategy.reduce_boolean_decision(out_of_time or out_of_steps, all=False):
            trainer.should_stop = True  # Lightning then validates (and checkpoints) before stopping

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_seconds = time.monotonic() - self._val_start

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed(), "val_seconds": self._val_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed_before = float(state_dict.get("elapsed", 0.0))
        self._val_seconds = float(state_dict.get("val_seconds", 0.0))


class Throughput(L.Callback):
    """Images per second and ETA; plain lines every ``every`` seconds when not on a TTY."""

    def __init__(self, budget: Budget, *, plain: bool | None = None, every: float = 10.0) -> None:
        self.budget = budget
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.every = every
        self._images = 0
        self._t0 = 0.0
        self._last_print = 0.0
        self.images_per_second = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._t0 = 0, time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch["image"]) * trainer.world_size
        dt = time.monotonic() - self._t0
        if dt <= 0:
            return
        self.images_per_second = self._images / dt
        progress = self.budget.progress()
        eta = self.budget.elapsed() * (1 - progress) / progress if progress > 0 else float("nan")
        pl_module.log("img_s", self.images_per_second, prog_bar=True, on_step=True, on_epoch=False)
        pl_module.log("eta_s", eta, prog_bar=True, on_step=True, on_epoch=False)
        now = time.monotonic()
        if self.plain and trainer.is_global_zero and now - self._last_print >= self.every:
            self._last_print = now
            loss = trainer.callback_metrics.get("train/loss_step")
            loss_text = f"{float(loss):.4f}" if loss is not None else "-"
            metric = _val_metric(trainer)
            print(
                f"epoch {trainer.current_epoch} step {trainer.global_step} loss {loss_text}{metric} "
                f"{self.images_per_second:.1f} img/s eta {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.plain and trainer.is_global_zero and not trainer.sanity_checking:
            print(f"epoch {trainer.current_epoch} validation{_val_metric(trainer)}", file=sys.stderr, flush=True)


def _val_metric(trainer: L.Trainer) -> str:
    parts = []
    for key in ("val/aji", "val/pq", "val/miou"):
        if key in trainer.callback_metrics:
            parts.append(f" {key.split('/')[1]} {float(trainer.callback_metrics[key]):.4f}")
    return "".join(parts)


class WeightEMA(L.Callback):
    """An exponential moving average (EMA) of the model's weights, scored and saved in their place.

    After optimizer step ``t`` (1, 2, ...) with weights ``w_t`` the average becomes
    ``ema_t = ema_{t-1} + (w_t - ema_{t-1}) * (1 - decay) / (1 - decay**t)``: the bias-corrected EMA
    (as Adam corrects its moments), i.e. the mean of ``w_1 .. w_t`` weighted ``decay**(t - i)``,
    so a short run is not pulled toward the random initial weights (``ema_1 = w_1``). Floating-point
    parameters and buffers of ``pl_module.model`` (batch-norm statistics too) are averaged,
    integer buffers copied. The average spans about ``1 / (1 - decay)`` steps.

    Validation scores the averaged weights (so ``best.ckpt`` is the best average). Every checkpoint
    holds them as its ``state_dict`` (what ``seglab predict`` and calibration load) and the training
    weights in this callback's state, which ``--resume`` trains on. After training the module keeps
    the averaged weights (the run report's overlays show them).

    Args:
        decay: in (0, 1), e.g. 0.999.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0  # optimizer steps averaged
        self._seen_step = -1
        self._ema: dict[str, torch.Tensor] | None = None
        self._live: dict[str, torch.Tensor] | None = None  # training weights while the EMA is swapped in
        self._module: L.LightningModule | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._module = pl_module  # before a checkpoint is restored (load_state_dict needs it)

    def _weights(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self._seen_step:  # no optimizer step in this batch
            return
        self._seen_step = trainer.global_step
        self.updates += 1
        if self._ema is None or self.updates == 1:
            self._ema = self._weights(pl_module)
            return
        rate = (1.0 - self.decay) / (1.0 - self.decay**self.updates)
        for name, value in pl_module.model.state_dict().items():
            ema = self._ema[name]
            if ema.is_floating_point():
                ema.lerp_(value.detach().to(ema.dtype), rate)
            else:
                ema.copy_(value)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self._ema is not None and self._live is None:
            self._live = self._weights(pl_module)
            pl_module.model.load_state_dict(self._ema)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._live is not None:
            pl_module.model.load_state_dict(self._live)
            self._live = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)  # the trained model is the average

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._ema is not None:
            checkpoint["state_dict"].update({f"model.{k}": v.detach().clone() for k, v in self._ema.items()})

    def state_dict(self) -> dict[str, Any]:
        if self._ema is None or self._module is None:
            return {"updates": self.updates}
        live = self._live if self._live is not None else self._weights(self._module)
        return {"updates": self.updates, "seen_step": self._seen_step, "training_weights": live}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the restored model holds the checkpoint's ``state_dict`` (the average); the
        training weights come back from this callback's state."""
        self.updates = int(state_dict.get("updates", 0))
        self._seen_step = int(state_dict.get("seen_step", -1))
        live = state_dict.get("training_weights")
        if live is not None and self._module is not None:
            self._ema = self._weights(self._module)
            self._module.model.load_state_dict(live)

