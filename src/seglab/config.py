"""Run configuration: flat, validated, YAML in and out.

A training run is described by one :class:`TrainConfig`. It comes from defaults, then a YAML file
(``--config``), then command-line flags, each overriding the one before. The resolved config is
saved as ``RUN_DIR/config.yaml`` so that a run can be repeated exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from seglab.errors import ConfigError, DataError

Task = Literal["instance", "semantic", "panoptic"]
Method = Literal["three_class", "distance", "embedding", "seeds", "recurrent"]
BUDGETS = ("minutes", "epochs", "max_steps")  # a run has at most one


class _BadValue(ValueError):
    """A bad value of one config key; the key lets the error name where the value came from."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"must be >= {low}"


# key -> (test, problem); an optional key left at None is not checked
_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val_fraction": ((lambda v: 0.0 < v < 1.0), "must lie in (0, 1)"),
    "patch": _at_least(16),
    **{key: _at_least(1) for key in ("batch_size", "patches_per_image", "devices", "num_nodes", "val_every", "embedding_dim")},
    "workers": _at_least(0),
    "warmup": ((lambda v: 0.0 <= v < 1.0), "must lie in [0, 1)"),
    "foreground_sampling": ((lambda v: 0.0 <= v <= 1.0), "must lie in [0, 1]"),
    "num_classes": _at_least(2),
    "minutes": ((lambda v: math.isfinite(v) and v > 0), "must be a finite number > 0"),
    "epochs": ((lambda v: v > 0), "must be positive"),
    "mpp": ((lambda v: math.isfinite(v) and v > 0), "must be a finite number > 0 (µm per pixel), or null: from the images"),
    "max_steps": ((lambda v: v > 0), "must be positive"),
    "lr": ((lambda v: math.isfinite(v) and v > 0), "must be a finite number > 0"),
    "weight_decay": ((lambda v: math.isfinite(v) and v >= 0), "must be a finite number >= 0"),
    "grad_clip": ((lambda v: math.isfinite(v) and v >= 0), "must be a finite number >= 0 (or null: off)"),
    "encoder_lr_scale": ((lambda v: math.isfinite(v) and v >= 0), "must be a finite number >= 0 (0 = frozen)"),
    "ema_decay": ((lambda v: 0.0 < v < 1.0), "must lie in (0, 1) (or null: off)"),
    "early_stop_patience": _at_least(1),
    "seed": ((lambda v: 0 <= v < 2**32), "must lie in [0, 2**32 - 1]"),
}


class TrainConfig(BaseModel):
    """Everything a training run needs; field comments say what each one does."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str  # folder with images/ and labels/
    out: str  # run folder: checkpoints, config.yaml, metrics.csv, curves.png, overlays
    val: str | None = None  # validation folder; None = hold out val_fraction of `data`
    val_fraction: float = 0.2  # share of images held out when `val` is None (at least one)
    task: Task = "instance"  # instance (semantic-to-instance), semantic, or panoptic (instances + a class per pixel)
    method: Method = "three_class"  # instance route (see seglab.spec.recipes)
    embedding_dim: int | None = None  # embedding channels (None: 8, the recurrent route 32)
    embedding_kwargs: dict[str, Any] = {}  # embedding-route loss options (delta_v, coord_unit, ...)
    num_classes: int | None = None  # semantic only; inferred from the labels when None
    model: str = "unet"  # a name from seglab.models.MODELS
    encoder: str | None = None  # backbone: None (classic), resnet18/34/50, any timm name
    model_kwargs: dict[str, Any] = {}  # extra keyword arguments for the model
    loss: str = "ce+dice"  # e.g. "ce+dice", "ce+0.5*jaccard", "focal", "lovasz"
    # loss options (seglab.losses.create_loss): `option: value` reaches every term of `loss` that
    # takes it ({weight: [1, 2, 4]}: class weights of ce and dice), `term: {option: value}` that
    # term only ({ce: {weight: [1, 2, 4]}, dice: {smooth: 1}}); focal gamma, tversky alpha/beta, ...
    loss_kwargs: dict[str, Any] = {}
    decoder_kwargs: dict[str, Any] = {}  # instance decoder options (thresholds, min_size)
    calibrate: bool = True  # after training, pick the decoder's main threshold on the validation set
    minutes: float | None = None  # wall-clock training budget (a run has one budget: minutes, epochs or max_steps)
    epochs: int | None = None  # number of epochs (one epoch = patches_per_image x images)
    max_steps: int | None = None  # number of optimiser steps
    batch_size: int = 8
    patch: int = 256  # training patch size (images smaller than this are padded)
    # µm per pixel of the training images, recorded in the checkpoint so that prediction reads a
    # slide at this resolution; None: the median the images' metadata states (unknown if none does)
    mpp: float | None = None
    patches_per_image: int = 4  # random patches drawn per image and epoch
    # share of training patches centred on a foreground pixel (semantic: of a class drawn uniformly
    # among the image's foreground classes, so rare classes weigh as much as common ones), the rest
    # placed uniformly; 0 = uniform only. nnU-Net centres 1/3 of its patches on foreground
    foreground_sampling: float = 0.0
    augment: Literal["none", "default", "strong"] = "default"
    modality: Literal["brightfield", "fluorescence"] = "brightfield"  # photometric augmentation; auto from the data
    normalize: Literal["auto", "dataset", "image", "dtype"] = "auto"  # intensity scaling (seglab.data.normalize); auto: from the data
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "onecycle", "constant"] = "onecycle"
    warmup: float = 0.05  # share of the budget spent warming up the learning rate
    grad_clip: float | None = 1.0  # clip gradient norm (None = off)
    # model.encoder learns at lr x this (pretrained backbones: e.g. 0.1); 0 freezes its weights
    encoder_lr_scale: float = 1.0
    # validate, checkpoint and predict with an exponential moving average of the weights (e.g.
    # 0.999, about the last 1 / (1 - decay) steps; bias-corrected); None = the trained weights
    ema_decay: float | None = None
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"  # auto: AMP on GPU
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = 1
    strategy: str = "auto"  # e.g. ddp (gloo on CPU, nccl on GPU)
    num_nodes: int = 1
    workers: int = 2  # DataLoader worker processes
    seed: int = 0
    val_every: int = 1  # validate every N epochs
    early_stop_patience: int | None = None  # stop after N validations without a better val/aji (val/miou); None = never
    overlays: int = 4  # validation overlays written at the end

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        for key, (ok, problem) in _VALUE_RULES.items():
            value = getattr(self, key)
            if value is not None and not ok(value):
                raise _BadValue(key, f"{problem}, got {value!r}")
        given = [key for key in BUDGETS if getattr(self, key) is not None]
        if len(given) > 1:
            raise _BadValue(given[-1], f"give one budget (minutes, epochs or max_steps), got {' and '.join(given)}")
        return self

    @property
    def budget_given(self) -> bool:
        return any(v is not None for v in (self.minutes, self.epochs, self.max_steps))


def _format_validation_error(exc: ValidationError, source: str, flags: frozenset[str] = frozenset()) -> ConfigError:
    """One line naming where the bad value came from: ``--flag: ...`` for a key in ``flags``,
    else ``source: key: ...`` (the YAML file)."""
    err = exc.errors()[0]
    key = getattr((err.get("ctx") or {}).get("error"), "key", None) or ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        flag = "--" + key.replace("_", "-")
        return ConfigError(f"{source}: {key} is required ({flag} or '{key}:' in a YAML config)")
    if err["type"] == "extra_forbidden":
        valid = ", ".join(sorted(TrainConfig.model_fields))
        return ConfigError(f"{source}: unknown config key {key!r}; valid keys: {valid}")
    if key.split(".")[0] in flags:
        return ConfigError(f"--{key.split('.')[0].replace('_', '-')}: {msg}")
    return ConfigError(f"{source}: {key}: {msg}" if key else f"{source}: {msg}")


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a one-line DataError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise DataError(path, f"invalid YAML{where}") from None
    if not isinstance(data, dict):
        raise DataError(path, "config must be a YAML mapping of key: value")
    return data


def packaged_configs() -> dict[str, Path]:
    """The recipes shipped with seglab (``seglab/configs/*.yaml``), by name."""
    folder = Path(__file__).parent / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """A YAML path as given, or a packaged recipe by name (``nuclei_unet``); else a DataError
    listing the packaged names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_configs()
    if str(name_or_path).removesuffix(".yaml") in packaged:
        return packaged[str(name_or_path).removesuffix(".yaml")]
    raise DataError(path, f"config file not found (nor a packaged recipe: {', '.join(packaged)})")


def resolve_config(
    yaml_path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults <- YAML file (a path or a packaged recipe's name) <- overrides (flags).

    ``None`` overrides are ignored. A run has one budget (``minutes``, ``epochs`` or
    ``max_steps``): a budget among the overrides replaces the YAML's budget, whichever unit
    either uses; two budgets in the YAML, or two among the overrides, are an error. Errors name
    the flag (``--lr``) when the bad value came from the overrides, else the YAML file.
    """
    values: dict[str, Any] = {}
    source = "config"
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if yaml_path is not None:
        yaml_path = find_config(yaml_path)
        values.update(load_yaml(yaml_path))
        source = str(yaml_path)
        in_yaml = [key for key in BUDGETS if values.get(key) is not None]
        if len(in_yaml) > 1:
            raise ConfigError(f"{source}: give one budget (minutes, epochs or max_steps), got {' and '.join(in_yaml)}")
        if any(key in flags for key in BUDGETS):
            for key in in_yaml:  # the flag's budget wins
                del values[key]
    values.update(flags)
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise _format_validation_error(exc, source, frozenset(flags)) from None


def save_config(config: TrainConfig, path: str | os.PathLike[str], *, notes: list[str] | None = None) -> None:
    """Write the resolved config as YAML, atomically; ``notes`` go first as ``#`` comments
    (the automatic recipe's reasons)."""
    import yaml

    from seglab.fileio import write_text_atomic

    header = "".join(f"# {line}\n" for line in ["chosen automatically from the data and the budget:", *notes]) if notes else ""
    write_text_atomic(path, header + yaml.safe_dump(config.model_dump(), sort_keys=False))
