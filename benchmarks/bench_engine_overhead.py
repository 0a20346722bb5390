"""Engine overhead: seglab's Lightning training vs a bare PyTorch loop, same model, data and batch.

Both run the demo's recipe (U-Net depth 4, 16 base channels, 3-class target, CE + Dice, AdamW)
on the same synthetic patches for the same number of steps, with the same DataLoader settings.
Images per second are measured after a warm-up, over the timed steps only.

Usage:
    python benchmarks/bench_engine_overhead.py [--steps 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch


class StepTimer(L.Callback):
    """Wall time of training steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.images = warmup, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.t0, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.warmup:
            self.images += len(batch["image"])

    def images_per_second(self) -> float:
        return self.images / (time.perf_counter() - self.t0)


def seglab_ips(config, steps: int, warmup: int) -> float:
    from seglab.engine import trainer as engine

    module, data, _ = engine.prepare(config)
    from seglab.cli.process import configure_training

    configure_training(workers=config.workers)
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps + warmup, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], gradient_clip_val=config.grad_clip, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    return timer.images_per_second()


def bare_ips(config, steps: int, warmup: int) -> float:
    from seglab.engine import trainer as engine

    module, data, _ = engine.prepare(config)  # same model, loss, normalisation and loader
    model, loss_fn = module.model.train(), module.loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = data.train_dataloader()
    done, images, t0 = 0, 0, 0.0
    while done < steps + warmup:
        for batch in loader:
            if done == warmup:
                t0, images = time.perf_counter(), 0
            x = module.normalise(batch["image"]).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), batch["three_class"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            done += 1
            images += len(x) if done > warmup else 0
            if done >= steps + warmup:
                break
    return images / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    from seglab.config import find_config, load_yaml, resolve_config
    from seglab.data.synthetic import write_synthetic_dataset

    recipe = load_yaml(find_config("nuclei_unet"))

    root = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    write_synthetic_dataset(root / "train", n=16, size=256, seed=0)
    write_synthetic_dataset(root / "val", n=2, size=256, seed=1)
    config = resolve_config(None, dict(recipe, data=str(root / "train"), val=str(root / "val"), out=str(root / "run")))
    rows = []
    for name, fn in (("bare PyTorch loop", bare_ips), ("seglab (Lightning)", seglab_ips), ("bare PyTorch loop (again)", bare_ips)):
        torch.manual_seed(0)
        rows.append((name, fn(config, args.steps, args.warmup)))
    bare = (rows[0][1] + rows[2][1]) / 2
    print(f"\n{args.steps} timed steps after {args.warmup} warm-up, batch {config.batch_size} x {config.patch}^2, CPU threads {torch.get_num_threads()}")
    print(f"{'loop':28s} {'img/s':>8s} {'vs bare':>8s}")
    for name, ips in rows:
        print(f"{name:28s} {ips:8.1f} {ips / bare:8.3f}")


if __name__ == "__main__":
    main()
