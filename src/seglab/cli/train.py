"""``seglab train``: one command from a folder of images and labels to a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

# flag name -> config key, for flags that override the YAML config
_OVERRIDES = (
    "data", "val", "task", "method", "model", "encoder", "loss", "minutes", "epochs", "max_steps",
    "devices", "strategy", "accelerator", "num_nodes", "batch_size", "patch", "patches_per_image",
    "lr", "workers", "seed", "num_classes", "augment", "precision", "out", "foreground_sampling",
    "ema_decay", "early_stop_patience", "encoder_lr_scale", "mpp",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a folder of images and labels",
        description="Train on DIR/images + DIR/labels. Flags override --config; the resolved "
        "configuration is saved as RUN_DIR/config.yaml.",
    )
    p.add_argument("--data", help="training folder (images/ and labels/)")
    p.add_argument("--val", help="validation folder (default: hold out 20%% of --data)")
    p.add_argument("--task", choices=["instance", "semantic", "panoptic"])
    p.add_argument("--method", choices=["three_class", "distance", "embedding", "seeds", "recurrent"], help="instance route (default three_class)")
    p.add_argument("--model", help="model name (see `seglab models`; default unet)")
    p.add_argument("--encoder", help="backbone, e.g. resnet34 or a timm name")
    p.add_argument("--loss", help='loss spec, e.g. "ce+dice" (default), "ce+0.5*jaccard", "focal"')
    budget = p.add_argument_group(
        "budget (one of)", "A budget flag replaces the --config file's budget, whatever unit either uses."
    ).add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-clock training budget")
    budget.add_argument("--epochs", type=int)
    budget.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--patch", type=int, help="training patch size (default 256)")
    p.add_argument("--patches-per-image", type=int)
    p.add_argument("--foreground-sampling", type=float, metavar="SHARE",
                   help="share of patches centred on foreground, rare classes first (default 0; nnU-Net 0.33)")
    p.add_argument("--lr", type=float)
    p.add_argument("--encoder-lr-scale", type=float, metavar="SCALE", help="encoder learns at lr x SCALE (0 = frozen; default 1)")
    p.add_argument("--ema-decay", "--ema", type=float, metavar="DECAY", help="validate and save a moving average of the weights, e.g. 0.999")
    p.add_argument("--early-stop-patience", "--early-stop", type=int, metavar="N",
                   help="stop after N validations without a better score")
    p.add_argument("--mpp", type=float, metavar="UM_PER_PX",
                   help="µm per pixel of the training images (default: from their metadata); saved in the checkpoint")
    p.add_argument("--num-classes", type=int, help="semantic task (default: from the labels)")
    p.add_argument("--augment", choices=["none", "default", "strong"])
    p.add_argument("--precision", choices=["auto", "32", "16-mixed", "bf16-mixed"])
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"])
    p.add_argument("--devices", type=int)
    p.add_argument("--strategy", help="e.g. ddp")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--workers", type=int, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--config", help="YAML config: a path or a packaged recipe name (nuclei_unet, nuclei_deeplabv3plus, ...)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.ckpt")
    existing.add_argument("--overwrite", action="store_true", help="train afresh into a RUN_DIR that already holds checkpoints, replacing them")
    p.set_defaults(run=run)


def refuse_existing_run(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """A run folder that holds checkpoints is only continued (``--resume``) or replaced on
    request (``--overwrite``), never silently overwritten. Empty or checkpoint-free folders are fine."""
    from seglab.errors import DataError

    if resume or overwrite:
        return
    found = [name for name in ("best.ckpt", "last.ckpt") if (run_dir / name).is_file()]
    if found:
        raise DataError(run_dir, f"holds a trained run ({', '.join(found)}); pass --resume to continue it or --overwrite to replace it")


def check_accelerator(accelerator: str, where: str) -> None:
    """A GPU accelerator asked for on a machine without one is a one-line error, not Lightning's traceback."""
    import torch

    from seglab.errors import ConfigError

    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if (accelerator == "cuda" and not cuda) or (accelerator == "mps" and not mps) or (accelerator == "gpu" and not (cuda or mps)):
        raise ConfigError(f"{where}: {accelerator!r} asked for, but this machine has no such GPU; use cpu or auto")


def run(args: argparse.Namespace) -> int:
    from seglab.config import resolve_config
    from seglab.engine.trainer import train
    from seglab.fileio import check_output_dir

    config_path = args.config
    saved = Path(args.out) / "config.yaml"
    if args.resume and config_path is None and saved.is_file():
        config_path = saved
    overrides = {key: getattr(args, key) for key in _OVERRIDES}
    config = resolve_config(config_path, overrides)
    from seglab.cli.process import configure_training

    configure_training(workers=config.workers, devices=config.devices, accelerator=config.accelerator)
    check_output_dir(config.out, "--out")
    refuse_existing_run(Path(config.out), resume=args.resume, overwrite=args.overwrite)
    check_accelerator(config.accelerator, "--accelerator" if args.accelerator else f"{config_path}: accelerator")
    result = train(config, resume=args.resume)
    score = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    print(f"best {result.monitor} {score}  steps {result.steps}  epochs {result.epochs}")
    print(f"checkpoint {result.best_checkpoint}")
    return 0
