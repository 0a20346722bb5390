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
from seglab.data.normalize import IntensityScaling
from seglab.engine.callbacks import AtomicCheckpointIO, Budget, Throughput
from seglab.engine.datamodule import SegmentationDataModule, load_samples, split_samples
from seglab.engine.module import SegmentationModule
from seglab.errors import ConfigError
from seglab.spec.checkpoint import make_meta
from seglab.spec.recipes import EMBEDDING_METHODS, Recipe, make_recipe

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


def _loggers(run_dir: Path, csv_version: str = "") -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="", version=csv_version)]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    return loggers


@dataclass
class RunPlan:
    """What a run is planned from: the resolved config, the data split and its fingerprint."""

    config: TrainConfig
    train_samples: list[Any]
    val_samples: list[Any]
    fingerprint: Any  # seglab.data.fingerprint.Fingerprint of the training data
    recipe: Recipe
    reasons: list[str]
    warnings: list[str]


def _device(config: TrainConfig) -> torch.device:
    return torch.device("cuda" if _on_gpu(config) else "cpu")


def _check_val(fp: Any, val_fp: Any, config: TrainConfig) -> None:
    from seglab.errors import DataError

    if val_fp.channels != fp.channels:
        raise DataError(config.val, f"images have {val_fp.channels} channels, the training images {fp.channels}")


def _num_classes(config: TrainConfig, fps: dict[str, Any]) -> int | None:
    """Semantic task: the pinned class count (checked against every label) or the largest index + 1;
    panoptic task: the classes of classes.yaml (train and val agreeing)."""
    if config.task == "panoptic":
        from seglab.engine.panoptic_module import panoptic_classes

        return len(panoptic_classes(config))
    if config.task != "semantic":
        return config.num_classes
    from seglab.errors import DataError

    folder, top = max(((f, fp.max_class) for f, fp in fps.items()), key=lambda kv: kv[1])
    if config.num_classes is None:
        return max(2, top + 1)
    if top >= config.num_classes:
        raise DataError(folder, f"labels hold class index {top}, but num_classes is {config.num_classes}")
    return config.num_classes


def plan_run(config: TrainConfig) -> RunPlan:
    """Read the data once (fingerprint, cached), check it, and fill the automatic recipe."""
    from seglab.data.fingerprint import fingerprint
    from seglab.engine.autoconfig import budget_warning, plan_config
    from seglab.models import DETECTION_MODELS

    samples = load_samples(config.data)
    if config.val is not None:
        train_samples, val_samples = samples, load_samples(config.val)
    else:
        train_samples, val_samples = split_samples(samples, config.val_fraction, config.seed)
    fp_task = "instance" if config.task == "panoptic" else config.task  # panoptic: its instance maps
    fp = fingerprint(samples, task=fp_task, root=config.data)
    fps = {config.data: fp}
    if config.val is not None:
        fps[config.val] = fingerprint(val_samples, task=fp_task, root=config.val)
        _check_val(fp, fps[config.val], config)
    num_classes = _num_classes(config, fps)
    method = "maskrcnn" if config.model in DETECTION_MODELS else config.method
    if method == "maskrcnn" and config.task != "instance":
        raise ConfigError(f"model {config.model!r} is for the instance task")
    recipe = make_recipe(config.task, method, num_classes, embedding_dim=config.embedding_dim)
    plan = plan_config(config, fp, classes=recipe.num_classes, aux=dict(recipe.aux_heads), device=_device(config))
    config = plan.config
    stats = _backbone_statistics(config, fp.channels)
    if stats is not None:
        numbers = lambda values: "/".join(f"{v:.3g}" for v in values)  # noqa: E731
        plan.reasons.append(f"normalize: mean {numbers(stats.mean)}, std {numbers(stats.std)} of the pretrained "
                            f"backbone ({stats.source}), not the data's")
    if method != "maskrcnn" and plan.seconds_per_step is None:  # a model the plan did not time
        factory = lambda: build_model(config, recipe, fp.channels, [0.0] * fp.channels, [1.0] * fp.channels)[0]  # noqa: E731
        warning = budget_warning(config, factory, fp.channels, recipe.num_classes, _device(config))
        if warning:
            plan.warnings.append(warning)
    return RunPlan(config, train_samples, val_samples, fp, recipe, plan.reasons, plan.warnings)


def _preprocessing(config: TrainConfig, fp: Any) -> dict[str, Any]:
    """The checkpoint's preprocessing block: intensity scaling, then mean and std per channel."""
    if config.normalize == "dataset":
        scaling = IntensityScaling("dataset", tuple(fp.clip_low), tuple(fp.clip_high))
        mean, std = fp.clipped_mean, fp.clipped_std
    elif config.normalize == "image":
        scaling, mean, std = IntensityScaling("image"), fp.image_mean, fp.image_std
    else:  # dtype (auto is resolved by the plan)
        import numpy as np

        dtype = np.dtype(fp.dtype)
        scale = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
        scaling, mean, std = IntensityScaling("dtype"), [m / scale for m in fp.mean], [max(s / scale, 1e-6) for s in fp.std]
    stats = _backbone_statistics(config, fp.channels)
    if stats is not None:  # a pretrained backbone expects the statistics of the images it learnt on
        mean, std = stats.mean, stats.std
    return {"in_channels": fp.channels, "intensity": scaling.to_preprocessing(), "mean": list(mean), "std": list(std)}


def _backbone_statistics(config: TrainConfig, channels: int) -> Any:
    """The pretrained backbone's mean and std (:func:`seglab.models.pretrained.pretrained_normalization`)."""
    from seglab.models import DETECTION_MODELS
    from seglab.models.pretrained import pretrained_normalization

    kwargs = dict(config.model_kwargs)
    if config.encoder is not None:  # as build_model passes it
        kwargs = {"backbone" if config.model in DETECTION_MODELS else "encoder": config.encoder, **kwargs}
    return pretrained_normalization(config.model, kwargs, channels)


def _class_loss(config: TrainConfig, recipe: Recipe) -> torch.nn.Module:
    """The loss on the class logits: ``config.loss`` with ``config.loss_kwargs`` (checked: keys,
    and one class weight per class of the recipe)."""
    from seglab.losses import check_loss_kwargs, create_loss

    loss = create_loss(config.loss, mode="multiclass", ignore_index=255, **check_loss_kwargs(config.loss, config.loss_kwargs))
    for name, weight in loss.named_buffers():
        if name.rsplit(".", 1)[-1] == "weight" and weight.numel() != recipe.num_classes:
            classes = ", ".join(recipe.class_names)
            raise ConfigError(f"loss_kwargs: weight has {weight.numel()} entries, the model predicts {recipe.num_classes} classes ({classes})")
    return loss


def prepare(config: TrainConfig, run: RunPlan | None = None) -> tuple[L.LightningModule, SegmentationDataModule, Recipe]:
    """Resolve data, recipe, model and loss into a module and a data module.

    ``run`` is :func:`plan_run`'s result; ``None`` plans here (``config`` is then replaced by the
    planned one).
    """
    run = run or plan_run(config)
    config = run.config
    train_samples, val_samples, fp, recipe = run.train_samples, run.val_samples, run.fingerprint, run.recipe
    pre = _preprocessing(config, fp)
    channels, mean, std = fp.channels, pre["mean"], pre["std"]
    model, model_kwargs = build_model(config, recipe, channels, mean, std)
    decoder = None if recipe.decoder is None else {"name": recipe.decoder, "kwargs": dict(config.decoder_kwargs)}
    meta = make_meta(
        task=recipe.task,
        method=recipe.method,
        model_name=config.model,
        model_kwargs=model_kwargs,
        preprocessing=pre,
        decoder=decoder,
        classes=list(recipe.class_names),
        patch_size=config.patch,
        mpp=config.mpp if config.mpp is not None else fp.mpp,
    )
    optim = {"lr": config.lr, "weight_decay": config.weight_decay, "schedule": config.schedule, "warmup": config.warmup,
             "encoder_lr_scale": config.encoder_lr_scale}
    if recipe.method == "maskrcnn":
        from seglab.engine.detection_module import DetectionModule

        if config.loss_kwargs:
            raise ConfigError(f"loss_kwargs do not apply to model {config.model!r} (it trains on its own losses)")

        module = DetectionModule(model=model, meta=meta, **optim)
    else:
        module_class, route_kwargs = SegmentationModule, {}
        if recipe.method in EMBEDDING_METHODS:
            from seglab.engine.embedding_module import EmbeddingModule as module_class
            from seglab.engine.embedding_module import check_route_kwargs

            route_kwargs = check_route_kwargs(config.embedding_kwargs)
        elif config.embedding_kwargs:
            raise ConfigError(f"embedding_kwargs apply to the embedding, seeds and recurrent methods, not {recipe.method!r}")
        if recipe.task == "panoptic":  # + the class head's loss; the classes go into meta
            from seglab.engine.panoptic_module import PanopticModule as module_class
            from seglab.engine.panoptic_module import panoptic_kwargs

            route_kwargs = panoptic_kwargs(config, train_samples, meta)
        loss = _class_loss(config, recipe)
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
        intensity=IntensityScaling.from_preprocessing(pre),
        modality=config.modality,
        foreground_sampling=config.foreground_sampling,
    )
    return module, data, recipe


def _calibrate(best: Path, val_samples: list[Any], config: TrainConfig) -> None:
    """Choose the decoder's main threshold on the validation images (seglab.engine.calibrate)."""
    from seglab.engine.calibrate import calibrate_checkpoint

    device = "cuda" if _on_gpu(config) else "cpu"
    from seglab.inference.predictor import default_tile

    tile = default_tile({"patch_size": config.patch})  # as seglab predict will run it
    record = calibrate_checkpoint(best, val_samples, user_kwargs=config.decoder_kwargs, tile=tile, device=device)
    if record is not None:
        scores = ", ".join(f"{k:g}: {v:.4f}" for k, v in record["scores"].items())
        print(f"decoder calibrated on {record['images']} validation images: {record['option']} = "
              f"{record['value']:g} (mean AJI {scores})", flush=True)


def _optional_callbacks(config: TrainConfig, monitor: str) -> list[L.Callback]:
    """Early stopping on the validation score and the weight average, when the config asks."""
    callbacks: list[L.Callback] = []
    if config.early_stop_patience is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=config.early_stop_patience,
                                       check_on_train_epoch_end=False))
    if config.ema_decay is not None:
        from seglab.engine.callbacks import WeightEMA

        callbacks.append(WeightEMA(config.ema_decay))
    return callbacks


def train(config: TrainConfig, *, resume: bool = False, plain_log: bool | None = None) -> TrainResult:
    """Train as the config says and write the run folder.

    Args:
        config: the resolved run configuration.
        resume: continue from ``RUN_DIR/last.ckpt`` (optimizer, schedule, epoch, elapsed time).
        plain_log: print plain progress lines instead of a progress bar (default: when stderr is
            not a terminal).

    Process-wide settings (torch's CPU threads, Lightning's console noise) are the caller's:
    :func:`seglab.cli.process.configure_training` makes the CLI's choice.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    from seglab.errors import DataError

    L.seed_everything(config.seed, workers=True, verbose=False)
    run_dir = Path(config.out)
    last = run_dir / "last.ckpt"
    if resume and not last.is_file():
        raise DataError(last, "nothing to resume: no last.ckpt in the run folder")
    if resume:  # rows that a killed resume logged (seglab.engine.report.fold_resumed_metrics)
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        from seglab.engine.report import fold_resumed_metrics

        if rank_zero_only.rank == 0:
            fold_resumed_metrics(run_dir)
    run = plan_run(config)
    for line in run.fingerprint.summary():
        print(f"data: {line}", flush=True)
    for line in run.reasons:
        print(f"recipe: {line}", flush=True)
    for line in run.warnings:
        print(f"seglab: warning: {line}", file=sys.stderr, flush=True)
    config = run.config
    module, data, recipe = prepare(config, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml", notes=run.reasons)
    from seglab.fileio import write_json_atomic

    write_json_atomic(run_dir / "fingerprint.json", run.fingerprint.to_dict())

    monitor = {"semantic": "val/miou", "panoptic": "val/panoptic_pq"}.get(recipe.task, "val/aji")
    budget = Budget(minutes=config.minutes, max_steps=config.max_steps, epochs=config.epochs)
    module.progress = budget.progress
    plain = (not sys.stderr.isatty()) if plain_log is None else plain_log
    throughput = Throughput(budget, plain=plain)
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir), filename="best", monitor=monitor, mode="max",
        enable_version_counter=False, auto_insert_metric_name=False,
    )
    # last.ckpt after every validation, improved or not (ModelCheckpoint's save_last writes it
    # only together with a new best): --resume continues from the latest state
    latest = ModelCheckpoint(dirpath=str(run_dir), filename="last", monitor=None, save_top_k=1,
                             enable_version_counter=False, auto_insert_metric_name=False)
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
        callbacks=[budget, throughput, *_optional_callbacks(config, monitor), checkpoint, latest],
        logger=_loggers(run_dir, "resumed" if resume else ""),  # CSVLogger would delete metrics.csv
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=not plain,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        default_root_dir=str(run_dir),
    )
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    finally:
        if resume and trainer.is_global_zero:
            from seglab.engine.report import fold_resumed_metrics

            fold_resumed_metrics(run_dir)  # the earlier rows, then the resumed run's
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
