"""seglab's default instance recipe vs segmentation_models_pytorch's U-Net, same data and budget.

Both train on the same fluorescence-like synthetic nuclei (the generator's ``fluo`` style), on the
same 3-class target (background / interior / boundary) with CE + Dice, for the same wall-clock
budget on this CPU, and both are decoded by the same marker watershed and scored on the same
held-out tiles. The peer is smp ``Unet(encoder_name="resnet18", encoder_weights=None)`` trained
by a plain PyTorch loop (AdamW, constant learning rate, smp's DiceLoss + CrossEntropy) on the
same patches (128 px, 8 per image, batch 8, the same augmentation and one DataLoader worker).

Usage:
    python benchmarks/bench_train_vs_smp.py [--minutes 3] [--out /tmp/bench_train]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_data(root: Path, seed: int) -> dict[str, Path]:
    from seglab.data.synthetic import write_synthetic_dataset

    splits = {"train": (48, seed), "val": (6, seed + 1000), "test": (12, seed + 2000)}
    for name, (n, s) in splits.items():
        write_synthetic_dataset(root / name, n=n, size=256, seed=s, style="fluo")
    return {name: root / name for name in splits}


def score(predict_probs, test_dir: Path) -> dict[str, float]:
    """Decode every test tile with the 3-class watershed and pool AJI / PQ over tiles (mean)."""
    from seglab.data.dataset import find_samples
    from seglab.data.io import image_to_tensor, read_image, read_label
    from seglab.instances import decode
    from seglab.metrics import InstanceMetrics

    acc = InstanceMetrics()
    seconds = []
    for sample in find_samples(test_dir):
        image = image_to_tensor(read_image(sample.image))
        t0 = time.perf_counter()
        pred = decode("three_class_watershed", predict_probs(image))
        seconds.append(time.perf_counter() - t0)
        acc.update(read_label(sample.label), pred)
    mean = acc.compute()["mean"]
    return {"aji": mean["aji"], "pq": mean["pq"], "s_per_tile": float(np.mean(seconds))}


def train_seglab(dirs: dict[str, Path], minutes: float, out: Path):
    from seglab.config import resolve_config
    from seglab.engine.checkpoint import build_model, load_checkpoint
    from seglab.engine.trainer import train

    config = resolve_config(
        "nuclei_unet",
        {"data": str(dirs["train"]), "val": str(dirs["val"]), "out": str(out), "minutes": minutes},
    )
    result = train(config, plain_log=True)
    ckpt = load_checkpoint(result.best_checkpoint)
    model = build_model(ckpt)
    pre = ckpt["seglab"]["preprocessing"]
    mean = torch.tensor(pre["mean"]).view(-1, 1, 1)
    std = torch.tensor(pre["std"]).view(-1, 1, 1)

    @torch.inference_mode()
    def predict(image: torch.Tensor) -> np.ndarray:
        return model(((image - mean) / std)[None]).softmax(1)[0].numpy()

    return predict, result.images_per_second


def train_smp(dirs: dict[str, Path], minutes: float, seed: int):
    import segmentation_models_pytorch as smp
    from torch.utils.data import DataLoader

    from seglab.data.dataset import SegmentationDataset, find_samples
    from seglab.data.transforms import build_transforms

    torch.manual_seed(seed)
    model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=3)
    # the same patch sampling as seglab's recipe, so both see the same pixels per step
    dataset = SegmentationDataset(
        find_samples(dirs["train"]), task="instance", targets=("three_class",), patch_size=128,
        patches_per_image=8, transform=build_transforms("default", channels=1), seed=seed,
    )
    loader = DataLoader(dataset, batch_size=8, shuffle=True, drop_last=True, num_workers=1, persistent_workers=True)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    deadline = time.monotonic() + 60 * minutes
    images, t0 = 0, time.monotonic()
    model.train()
    while time.monotonic() < deadline:
        for batch in loader:
            x, y = (batch["image"] - 0.5) / 0.25, batch["three_class"]
            logits = model(_pad32(x))[..., : x.shape[-2], : x.shape[-1]]
            loss = ce(logits, y) + dice(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += len(x)
            if time.monotonic() >= deadline:
                break
    ips = images / (time.monotonic() - t0)
    model.eval()

    @torch.inference_mode()
    def predict(image: torch.Tensor) -> np.ndarray:
        x = ((image - 0.5) / 0.25)[None]
        return model(_pad32(x))[..., : x.shape[-2], : x.shape[-1]].softmax(1)[0].numpy()

    return predict, ips


def _pad32(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % 32, 0, -h % 32), mode="reflect")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # the same CPU threads for both: seglab's policy (cores minus one DataLoader worker)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, cores - 1))
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_train_"))
    dirs = make_data(root / "data", args.seed)
    rows = []
    predict, ips = train_seglab(dirs, args.minutes, root / "seglab_run")
    rows.append(("seglab unet (default recipe)", ips, score(predict, dirs["test"])))
    torch.set_num_threads(max(1, cores - 1))
    predict, ips = train_smp(dirs, args.minutes, args.seed)
    rows.append(("smp Unet resnet18", ips, score(predict, dirs["test"])))
    print(f"\n{args.minutes:g} min CPU training each, fluo synthetic nuclei, {len(list((dirs['test'] / 'images').iterdir()))} test tiles, mean over tiles")
    print(f"{'model':32s} {'train img/s':>11s} {'AJI':>7s} {'PQ':>7s} {'s/tile':>7s}")
    for name, ips_, s in rows:
        print(f"{name:32s} {ips_:11.1f} {s['aji']:7.4f} {s['pq']:7.4f} {s['s_per_tile']:7.3f}")
    (a, _, sa), (_, _, sb) = rows
    print(f"seglab - smp: AJI {sa['aji'] - sb['aji']:+.4f}  PQ {sa['pq'] - sb['pq']:+.4f}")


if __name__ == "__main__":
    main()
