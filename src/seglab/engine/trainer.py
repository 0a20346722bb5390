"""``train(config)``: from a folder of images to a scored, checkpointed model.

Everything the CLI's ``seglab train`` does lives here, so it is testable without the CLI:
resolve data and recipe, build model, loss and Lightning trainer, fit within the budget, then
write the run folder (config.yaml, best.ckpt, last.ckpt, metrics.csv, curves.png, overlays/).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from seglab.config import TrainConfig, save_config
from seglab.engine.callbacks import AtomicCheckpointIO, Budget, Throughput
from seglab.engine.checkpoint import make_meta
from seglab.engine.datamodule import (
    SegmentationDataModule,
    channel_stats,
    infer_num_classes,
    load_samples,
    split_samples,
)
from seglab.engine.module import SegmentationModule
from seglab.engine.recipes import EMBEDDING_METHODS, Recipe, make_recipe
from seglab.errors import ConfigError

DEFAULT_EPOCHS = 30


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_score: float | None
    monitor: str
    steps: int
    epochs: int
    images_per_second: float


def build_model(
    config: TrainConfig, recipe: Recipe, in_channels: int, mean: list[float], std: list[float]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Create the model named by the config; return it and the kwargs that recreate it."""
    from seglab.models import create_model

    kwargs: dict[str, Any] = {"in_channels": in_channels, "num_classes": recipe.num_classes}
    if recipe.method == "maskrcnn":  # normalises inside; --encoder names its FPN backbone
        kwargs.update(image_mean=mean, image_std=std)
        if config.encoder is not None:
            kwargs["backbone"] = config.encoder
    elif config.encoder is not None:
        kwargs["encoder"] = config.encoder
    if recipe.aux_heads:
        kwargs["aux_heads"] = dict(recipe.aux_heads)
    kwargs.update(config.model_kwargs)
    return create_model(config.model, **kwargs), kwargs


def _on_gpu(config: TrainConfig) -> bool:
    """Whether the run trains on a CUDA GPU."""
    return config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return "32-true" if config.precision == "32" else config.precision
    return "16-mixed" if _on_gpu(config) else "32-true"


def _cpu_threads(config: TrainConfig) -> None:
    """On CPU, leave a core to each DataLoader worker: ``threads = (cores - workers) / devices``.

    Oversubscribed OpenMP threads wait at every barrier for a descheduled peer, which made
    training 5-7x slower on a 2-core machine. ``OMP_NUM_THREADS`` set by the user wins.
    """
    import os

    on_cpu = config.accelerator == "cpu" or (config.accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, (cores - config.workers) // max(1, config.devices)))


def _loggers(run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


def prepare(config: TrainConfig) -> tuple[L.LightningModule, SegmentationDataModule, Recipe]:
    """Resolve data, recipe, model and loss into a module and a data module."""
    from seglab.losses import create_loss

    samples = load_samples(config.data)
    if config.val is not None:
        train_samples, val_samples = samples, load_samples(config.val)
    else:
        train_samples, val_samples = split_samples(samples, config.val_fraction, config.seed)
    channels, mean, std = channel_stats(train_samples)
    num_classes = config.num_classes
    if config.task == "semantic" and num_classes is None:
        num_classes = infer_num_classes([*train_samples, *val_samples])
    from seglab.models import DETECTION_MODELS

    method = "maskrcnn" if config.model in DETECTION_MODELS else config.method
    if method == "maskrcnn" and config.task != "instance":
        raise ConfigError(f"model {config.model!r} is for the instance task")
    recipe = make_recipe(config.task, method, num_classes, embedding_dim=config.embedding_dim)
    model, model_kwargs = build_model(config, recipe, channels, mean, std)
    decoder = None if recipe.decoder is None else {"name": recipe.decoder, "kwargs": dict(config.decoder_kwargs)}
    meta = make_meta(
        task=recipe.task,
        method=recipe.method,
        model_name=config.model,
        model_kwargs=model_kwargs,
        preprocessing={"in_channels": channels, "mean": mean, "std": std},
        decoder=decoder,
        classes=list(recipe.class_names),
        patch_size=config.patch,
    )
    optim = {"lr": config.lr, "weight_decay": config.weight_decay, "schedule": config.schedule, "warmup": config.warmup}
    if recipe.method == "maskrcnn":
        from seglab.engine.detection_module import DetectionModule

        module = DetectionModule(model=model, meta=meta, **optim)
    else:
        module_class, route_kwargs = SegmentationModule, {}
        if recipe.method in EMBEDDING_METHODS:
            from seglab.engine.embedding_module import EmbeddingModule as module_class
            from seglab.engine.embedding_module import check_route_kwargs

            route_kwargs = check_route_kwargs(config.embedding_kwargs)
        elif config.embedding_kwargs:
            raise ConfigError(f"embedding_kwargs apply to the embedding, seeds and recurrent methods, not {recipe.method!r}")
        loss = create_loss(config.loss, mode="multiclass", ignore_index=255)
        model = model.to(memory_format=torch.channels_last)
        module = module_class(model=model, recipe=recipe, loss=loss, meta=meta, **optim, **route_kwargs)
    data = SegmentationDataModule(
        train=train_samples,
        val=val_samples,
        recipe=recipe,
        patch=config.patch,
        patches_per_image=config.patches_per_image,
        batch_size=config.batch_size,
        augment=config.augment,
        channels=channels,
        workers=config.workers,
        seed=config.seed,
    )
    return module, data, recipe


def _quiet_lightning() -> None:
    """Keep the console to seglab's own lines: Lightning's hardware banners and tips go."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*exists and is not empty.*", ".*LeafSpec.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*torch.utils._pytree.*", ".*smaller than the logging interval.*",
                    ".*dataloader is not resumable.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _calibrate(best: Path, val_samples: list[Any], config: TrainConfig) -> None:
    """Choose the decoder's main threshold on the validation images (seglab.engine.calibrate)."""
    from seglab.engine.calibrate import calibrate_checkpoint

    device = "cuda" if _on_gpu(config) else "cpu"
    record = calibrate_checkpoint(best, val_samples, user_kwargs=config.decoder_kwargs, tile=config.patch, device=device)
    if record is not None:
        scores = ", ".join(f"{k:g}: {v:.4f}" for k, v in record["scores"].items())
        print(f"decoder calibrated on {record['images']} validation images: {record['option']} = "
              f"{record['value']:g} (mean AJI {scores})", flush=True)


def train(config: TrainConfig, *, resume: bool = False, plain_log: bool | None = None) -> TrainResult:
    """Train as the config says and write the run folder.

    Args:
        config: the resolved run configuration.
        resume: continue from ``RUN_DIR/last.ckpt`` (optimizer, schedule, epoch, elapsed time).
        plain_log: print plain progress lines instead of a progress bar (default: when stderr is
            not a terminal).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    from seglab.errors import DataError

    _quiet_lightning()
    _cpu_threads(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    run_dir = Path(config.out)
    last = run_dir / "last.ckpt"
    if resume and not last.is_file():
        raise DataError(last, "nothing to resume: no last.ckpt in the run folder")
    module, data, recipe = prepare(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")

    monitor = "val/miou" if recipe.task == "semantic" else "val/aji"
    budget = Budget(minutes=config.minutes, max_steps=config.max_steps, epochs=config.epochs)
    module.progress = budget.progress
    plain = (not sys.stderr.isatty()) if plain_log is None else plain_log
    throughput = Throughput(budget, plain=plain)
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir), filename="best", monitor=monitor, mode="max", save_last=True,
        enable_version_counter=False, auto_insert_metric_name=False,
    )
    max_epochs = config.epochs if config.epochs is not None else (-1 if config.budget_given else DEFAULT_EPOCHS)
    if not config.budget_given:
        budget.epochs = DEFAULT_EPOCHS
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=_precision(config),
        max_epochs=max_epochs,
        max_steps=config.max_steps or -1,
        gradient_clip_val=config.grad_clip,
        check_val_every_n_epoch=config.val_every,
        callbacks=[budget, throughput, checkpoint],
        logger=_loggers(run_dir),
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=not plain,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        default_root_dir=str(run_dir),
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    score = checkpoint.best_model_score
    if trainer.is_global_zero:
        from seglab.engine.report import write_run_report

        if config.calibrate and best_path.is_file():
            _calibrate(best_path, data.val_samples, config)
        write_run_report(run_dir, module, data, overlays=config.overlays)
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best_path,
        last_checkpoint=last,
        best_score=None if score is None else float(score),
        monitor=monitor,
        steps=trainer.global_step,
        epochs=trainer.current_epoch,
        images_per_second=throughput.images_per_second,
    )
