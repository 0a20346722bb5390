"""seglab vs a plain PyTorch / smp loop, like with like: (a) engine vs plain loop, (b) defaults vs defaults.

Two comparisons, on the same data, 3-class target (background / interior / boundary), marker
watershed and minutes of wall clock on this CPU (validation included), scored alike on held-out
test images (whole-image forward, AJI and PQ as the mean over images; PQ matches IoU > 0.5):

(a) **engine vs plain loop, same everything.** One architecture in both arms: seglab's U-Net
    with a ResNet-18 encoder (``create_model("unet", encoder="resnet18")``, 14.3 M parameters;
    seglab cannot train an external smp model, and smp's ``Unet("resnet18")`` has the same layers
    give or take 384 parameters). The same CE + Dice (``seglab.losses``), AdamW lr 1e-3 (weight
    decay 1e-4 on weights, none on biases and norms), warm-up from 0.1x over 5% of the budget then
    cosine to 0.02x, gradient clipping at norm 1, 128-px patches, 8 per image and epoch, batch 8,
    seglab's ``default`` augmentation, each image scaled by its own percentiles then z-scored by
    the training set's statistics, float32, channels_last, 1 DataLoader worker and the remaining
    core for torch. Both keep the weights of the epoch with the best mean AJI on the same
    validation images (validated after every epoch and at the end), decoded by the same fixed
    decoder: the watershed's defaults. One arm is ``seglab train --config`` (the engine:
    Lightning, budget callback, schedule, checkpointing), the other a hand-written loop
    (``train_loops.py``). The gap is what the engine itself costs or adds. An extra row scores the
    engine's checkpoint with the decoder the engine calibrated on the validation images (what
    ``seglab predict`` would use).
(b) **defaults vs defaults.** seglab's plain command, ``seglab train --data D --val V --task
    instance --model unet --minutes M`` (the automatic recipe: model size, patch, batch, schedule,
    best validation checkpoint, calibrated decoder), against smp's documented default,
    ``smp.Unet(encoder_name="resnet18", encoder_weights=None)`` trained as smp's example notebooks
    train it (examples/camvid_segmentation_multiclass.ipynb, binary_segmentation_intro.ipynb):
    Adam lr 2e-4, cosine annealing to 1e-5 over the whole run, ``DiceLoss(mode, from_logits=True)``
    alone, inputs normalised by the encoder's ImageNet mean / std, the last weights. smp has no
    data pipeline, so the peer gets the patches of (a) (128 px, batch 8 - the notebooks' batch 32
    at 320 px or more would leave a few dozen steps on this CPU), the same augmentation and the
    same per-image intensity scaling to [0, 1] (16-bit images with a few hundred counts of signal
    would otherwise reach it at ~0.01), and no per-epoch validation (it does not change the weights
    kept, and leaves the peer more steps). Its output is decoded by the watershed's defaults;
    seglab's row uses its own calibrated decoder, and another row shows it with the defaults.

Data sets: ``fluo``, seglab's own fluorescence-like synthetic nuclei (``seglab data synth --style
fluo``: 48 training, 6 validation, 12 test tiles of 256 px), and ``fluo16`` from
``generalization_data.py`` (an independent generator: 16-bit fluorescence, 20 / 4 / 6 images of
256-384 px). One training seed per run, and a time budget is not bit-reproducible: differences
of a few hundredths of AJI are within run-to-run noise (on this CPU, training seeds 0 and 1 gave
(a) gaps of -0.035 / +0.008 on fluo and -0.033 / +0.020 on fluo16).

Usage:
    python benchmarks/bench_train_vs_smp.py [--minutes 3] [--sets fluo,fluo16] [--seed 0]
        [--data-seed 0] [--out WORK_DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_loops as tl  # noqa: E402

FIXED_DECODER: dict[str, Any] = {}  # the watershed's defaults (h 1.5, min_size 10, ...)
BATCH, PATCH, PER_IMAGE, WORKERS = 8, 128, 8, 1
LR, WEIGHT_DECAY, WARMUP, GRAD_CLIP = 1e-3, 1e-4, 0.05, 1.0
# (a): everything the automatic recipe would otherwise choose is pinned
ENGINE_CONFIG = {
    "task": "instance", "method": "three_class", "model": "unet", "encoder": "resnet18", "model_kwargs": {},
    "loss": "ce+dice", "loss_kwargs": {}, "decoder_kwargs": {"min_size": 10}, "calibrate": True,
    "batch_size": BATCH, "patch": PATCH, "patches_per_image": PER_IMAGE, "foreground_sampling": 0.0,
    "augment": "default", "modality": "fluorescence", "normalize": "image", "lr": LR,
    "weight_decay": WEIGHT_DECAY, "schedule": "onecycle", "warmup": WARMUP, "grad_clip": GRAD_CLIP,
    "encoder_lr_scale": 1.0, "ema_decay": None, "early_stop_patience": None, "precision": "32",
    "accelerator": "cpu", "workers": WORKERS, "val_every": 1, "overlays": 0,
}
SMP_LR, SMP_ETA_MIN = 2e-4, 1e-5


# ------------------------------------------------------------------------------------------- data
def make_sets(root: Path, names: list[str], seed: int) -> dict[str, Path]:
    """``root/<set>/{train,val,test}`` for every set asked for."""
    out = {}
    for name in names:
        if name == "fluo":
            from seglab.data.synthetic import write_synthetic_dataset

            for split, n, offset in (("train", 48, 0), ("val", 6, 1000), ("test", 12, 2000)):
                write_synthetic_dataset(root / name / split, n=n, size=256, seed=seed + offset, style="fluo")
        else:
            spec = importlib.util.spec_from_file_location("generalization_data", HERE / "generalization_data.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.make_set(name, root / name, seed)
        out[name] = root / name
    return out


def samples(folder: Path):
    from seglab.data.dataset import find_samples

    return find_samples(folder, require_labels=True)


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def row(arm: str, model: torch.nn.Module, ips: float, steps: int, scores: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"arm": arm, "params": params(model), "train_img_s": ips, "steps": steps, **scores,
            "torch_threads": torch.get_num_threads(), **extra}


# ------------------------------------------------------------------------------------------- arms
def seglab_run(data: Path, run: Path, minutes: float, seed: int, config_yaml: Path | None) -> tuple[Any, dict]:
    """``seglab train [--config Y] --data D/train --val D/val --out RUN --minutes M [--task instance
    --model unet]``, through what the CLI calls (``resolve_config``, ``configure_training``, ``train``)."""
    from seglab.cli.process import configure_training
    from seglab.config import resolve_config
    from seglab.engine.trainer import train
    from seglab.spec.checkpoint import build_model, load_checkpoint

    flags = {"data": str(data / "train"), "val": str(data / "val"), "out": str(run), "minutes": minutes, "seed": seed}
    if config_yaml is None:
        flags.update(task="instance", model="unet")
    config = resolve_config(config_yaml, flags)
    # what the CLI sets before train(): torch threads = cores - DataLoader workers, quiet Lightning
    configure_training(workers=config.workers, devices=config.devices, accelerator=config.accelerator)
    result = train(config, plain_log=True)
    ckpt = load_checkpoint(result.best_checkpoint)
    return result, {"model": build_model(ckpt), "pre": ckpt["seglab"]["preprocessing"],
                    "decoder": dict(ckpt["seglab"]["decoder"]["kwargs"])}


def arm_engine(data: Path, work: Path, minutes: float, seed: int) -> list[dict[str, Any]]:
    import yaml

    config_yaml = work / "engine.yaml"
    config_yaml.write_text(yaml.safe_dump({**ENGINE_CONFIG, "seed": seed}, sort_keys=False))
    result, out = seglab_run(data, work / "a_engine", minutes, seed, config_yaml)
    pipe = tl.Pipeline.from_preprocessing(out["pre"])
    test = tl.image_dataset(samples(data / "test"), pipe)
    fixed = tl.evaluate(out["model"], test, pipe, FIXED_DECODER)
    calibrated = tl.evaluate(out["model"], test, pipe, out["decoder"])
    base = {"model": out["model"], "ips": result.images_per_second, "steps": result.steps}
    return [row("engine", base["model"], base["ips"], base["steps"], fixed, decoder=FIXED_DECODER,
                command=f"seglab train --config {config_yaml} --data {data}/train --val {data}/val "
                        f"--out {work}/a_engine --minutes {minutes:g}", val_aji=result.best_score),
            row("engine_calibrated", base["model"], base["ips"], base["steps"], calibrated, decoder=out["decoder"])]


def arm_plain(data: Path, work: Path, minutes: float, seed: int) -> dict[str, Any]:
    from seglab.data.fingerprint import fingerprint
    from seglab.data.normalize import IntensityScaling
    from seglab.losses import create_loss
    from seglab.models import create_model

    train_samples = samples(data / "train")
    fp = fingerprint(train_samples, task="instance", root=data / "train")  # the engine's statistics
    pipe = tl.Pipeline(IntensityScaling("image").to_preprocessing(), list(fp.image_mean), list(fp.image_std))
    torch.manual_seed(seed)
    model = create_model("unet", encoder="resnet18", in_channels=fp.channels, num_classes=3)
    model = model.to(memory_format=torch.channels_last)
    val = tl.image_dataset(samples(data / "val"), pipe)
    result = tl.train_loop(
        model, tl.patch_dataset(train_samples, pipe, channels=fp.channels, patch=PATCH, per_image=PER_IMAGE, seed=seed),
        pipe, minutes=minutes, optimizer=tl.adamw_no_decay_on_norms(model, lr=LR, weight_decay=WEIGHT_DECAY),
        lr_factor=lambda t: tl.warmup_cosine(t, warmup=WARMUP), grad_clip=GRAD_CLIP,
        loss_fn=create_loss("ce+dice", mode="multiclass", ignore_index=255), batch_size=BATCH, workers=WORKERS,
        seed=seed, validate=lambda m: tl.evaluate(m, val, pipe, FIXED_DECODER)["aji"],
    )
    scores = tl.evaluate(model, tl.image_dataset(samples(data / "test"), pipe), pipe, FIXED_DECODER)
    return row("plain", model, result.images_per_second, result.steps, scores, decoder=FIXED_DECODER,
               val_aji=max(result.val_scores), best_epoch=result.best_epoch, epochs=result.epochs)


def arm_seglab_default(data: Path, work: Path, minutes: float, seed: int) -> list[dict[str, Any]]:
    result, out = seglab_run(data, work / "b_seglab", minutes, seed, None)
    pipe = tl.Pipeline.from_preprocessing(out["pre"])
    test = tl.image_dataset(samples(data / "test"), pipe)
    own = tl.evaluate(out["model"], test, pipe, out["decoder"])
    fixed = tl.evaluate(out["model"], test, pipe, FIXED_DECODER)
    command = (f"seglab train --data {data}/train --val {data}/val --task instance --model unet "
               f"--minutes {minutes:g} --out {work}/b_seglab")
    return [row("seglab_default", out["model"], result.images_per_second, result.steps, own, decoder=out["decoder"],
                command=command, val_aji=result.best_score),
            row("seglab_default_fixed", out["model"], result.images_per_second, result.steps, fixed, decoder=FIXED_DECODER)]


def arm_smp_default(data: Path, work: Path, minutes: float, seed: int) -> dict[str, Any]:
    import segmentation_models_pytorch as smp

    from seglab.data.normalize import IntensityScaling

    train_samples = samples(data / "train")
    channels = tl.image_dataset(train_samples[:1], tl.Pipeline({"mode": "dtype"}, [0.0], [1.0]))[0]["image"].shape[0]
    mean, std = tl.IMAGENET_GRAY
    pipe = tl.Pipeline(IntensityScaling("image").to_preprocessing(), mean * channels, std * channels)
    torch.manual_seed(seed)
    model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=channels, classes=3)
    model = model.to(memory_format=torch.channels_last)
    result = tl.train_loop(
        model, tl.patch_dataset(train_samples, pipe, channels=channels, patch=PATCH, per_image=PER_IMAGE, seed=seed),
        pipe, minutes=minutes, optimizer=torch.optim.Adam(model.parameters(), lr=SMP_LR),
        lr_factor=tl.cosine_to(SMP_ETA_MIN / SMP_LR), loss_fn=smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255),
        batch_size=BATCH, workers=WORKERS, seed=seed, pad=32, validate=None,
    )
    scores = tl.evaluate(model, tl.image_dataset(samples(data / "test"), pipe), pipe, FIXED_DECODER, pad=32)
    return row("smp_default", model, result.images_per_second, result.steps, scores, decoder=FIXED_DECODER,
               epochs=result.epochs)


# ------------------------------------------------------------------------------------------ table
LABELS = {
    "engine": ("(a)", "seglab engine: train --config (pinned)"),
    "plain": ("(a)", "plain PyTorch loop, same model+recipe"),
    "engine_calibrated": ("(a)+", "engine, decoder calibrated on val"),
    "seglab_default": ("(b)", "seglab train, automatic recipe"),
    "smp_default": ("(b)", "smp Unet resnet18, smp examples' recipe"),
    "seglab_default_fixed": ("(b)+", "seglab train, watershed defaults"),
}
DIFFS = (("engine", "plain", "(a)", "engine - plain"), ("seglab_default", "smp_default", "(b)", "seglab - smp"))


def print_table(results: dict[str, dict[str, Any]], minutes: float) -> None:
    print()
    print("(a) engine vs plain loop, like with like: the same seglab U-Net (ResNet-18 encoder), loss, AdamW and "
          "warm-up+cosine schedule, patches, batch, augmentation, normalisation, best-validation-AJI checkpoint "
          "and fixed decoder (watershed defaults) in both arms; only the training code differs.")
    print("(b) defaults vs defaults: `seglab train --task instance --model unet --minutes M` (automatic recipe, "
          "calibrated decoder) vs smp Unet(resnet18, no weights) trained as smp's examples do (Adam 2e-4, cosine "
          "to 1e-5, Dice loss, last weights), decoded by the watershed's defaults.")
    print(f"{minutes:g} min CPU training per arm (validation included); AJI, PQ: mean over test images, PQ at IoU > 0.5. "
          "Rows marked + are the same runs scored with the other decoder.")
    print(f"{'set':7s} {'cmp':5s} {'arm':42s} {'params':>7s} {'train img/s':>11s} {'steps':>6s} {'AJI':>7s} {'PQ':>7s}")
    for name, rows in results.items():
        by = {r["arm"]: r for r in rows}
        for key in ("engine", "plain", "engine_calibrated", "seglab_default", "smp_default", "seglab_default_fixed"):
            if key not in by:
                continue
            r = by[key]
            cmp_, label = LABELS[key]
            print(f"{name:7s} {cmp_:5s} {label:42s} {r['params'] / 1e6:6.2f}M {r['train_img_s']:11.1f} {r['steps']:6d} "
                  f"{r['aji']:7.4f} {r['pq']:7.4f}")
            for a, b, c, text in DIFFS:
                if key == b and a in by:
                    x = by[a]
                    print(f"{name:7s} {c:5s} {text:42s} {'':7s} {x['train_img_s'] / r['train_img_s']:10.2f}x "
                          f"{x['steps'] - r['steps']:+6d} {x['aji'] - r['aji']:+7.4f} {x['pq'] - r['pq']:+7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per arm (default 3)")
    parser.add_argument("--sets", default="fluo,fluo16", help="comma-separated: fluo (seglab synth), fluo16, ...")
    parser.add_argument("--seed", type=int, default=0, help="training seed (model init, patches, augmentation)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated data sets")
    parser.add_argument("--out", type=Path, default=None, help="work dir (default: a new temporary dir)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write every row as JSON")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_train_"))
    sets = make_sets(work / "data", [s for s in args.sets.split(",") if s], args.data_seed)
    results: dict[str, list[dict[str, Any]]] = {}
    for name, data in sets.items():
        run = work / "runs" / name
        run.mkdir(parents=True, exist_ok=True)
        rows = [*arm_engine(data, run, args.minutes, args.seed), arm_plain(data, run, args.minutes, args.seed),
                *arm_seglab_default(data, run, args.minutes, args.seed), arm_smp_default(data, run, args.minutes, args.seed)]
        results[name] = rows
        print(f"{name}: " + "  ".join(f"{r['arm']} AJI {r['aji']:.4f}" for r in rows), flush=True)
    print_table(results, args.minutes)
    if args.json:
        args.json.write_text(json.dumps({"minutes": args.minutes, "seed": args.seed, "data_seed": args.data_seed, "sets": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
