"""Claim: down- and up-sampling without skip connections loses spatial detail; skips (U-Net)
bring it back, whatever the up-sampling.

The library's ``encdec`` (no skips) and ``unet`` (skips), same depth and widths, each with the four
up-sampling modes of ``seglab.models.blocks`` (``nearest``, ``maxunpool``, ``transposed``,
``resize_conv``), trained the same way on the synthetic nuclei (foreground vs background) and
scored on held-out tiles: mIoU and the boundary F1 (tolerance 2 px, ``seglab.metrics.boundary_f1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from seglab.experiments.report import Outcome, new_figure, save_figure, verdict

ARCHITECTURES = ("encdec", "unet")


def settings(quick: bool) -> dict:
    if quick:
        return {"size": 64, "depth": 3, "base": 8, "steps": 40, "batch": 4, "train_tiles": 16, "test_tiles": 4}
    return {"size": 64, "depth": 3, "base": 8, "steps": 300, "batch": 8, "train_tiles": 32, "test_tiles": 16,
            "scaled": "Scaled down from 128 px tiles, depth 4 and 16 base channels so that the gallery runs on a shared 2-core CPU. "}


def score(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> tuple[dict, np.ndarray]:
    """mIoU (pooled confusion matrix) and mean boundary F1 over the tiles; the predictions."""
    from seglab.metrics import boundary_f1, confusion_matrix, scores_from_matrix

    model.eval()
    with torch.no_grad():
        pred = model(images).argmax(1).numpy()
    truth = target.numpy()
    miou = scores_from_matrix(confusion_matrix(pred, truth, 2))["miou"]
    bf = float(np.mean([boundary_f1(t, p) for t, p in zip(truth, pred, strict=True)]))
    return {"miou": miou, "boundary_f1": bf}, pred


def _figure(data: dict, example: dict, test_image: np.ndarray, test_target: np.ndarray, out: Path) -> str:
    from seglab.models.blocks import UPSAMPLE_MODES

    fig = new_figure(12, 3.6)
    grid = fig.add_gridspec(2, 6)
    ax = fig.add_subplot(grid[:, :2])
    xs = np.arange(len(UPSAMPLE_MODES))
    for k, arch in enumerate(ARCHITECTURES):
        ax.bar(xs + 0.4 * k - 0.2, [data[arch][m]["boundary_f1"] for m in UPSAMPLE_MODES], 0.4, label=f"{arch} boundary F1")
        ax.plot(xs + 0.4 * k - 0.2, [data[arch][m]["miou"] for m in UPSAMPLE_MODES], "k^" if k else "kv", label=f"{arch} mIoU")
    ax.set_xticks(xs, UPSAMPLE_MODES, fontsize=7)
    ax.set(ylim=(0, 1), title="held-out tiles")
    ax.legend(fontsize=6, loc="lower right")
    panels = [("image", test_image), ("reference", test_target)] + [(f"{a} {m}", example[a][m]) for a in ARCHITECTURES for m in ("nearest", "transposed")]
    for i, (title, img) in enumerate(panels[:8]):
        a = fig.add_subplot(grid[i // 4, 2 + i % 4])
        a.imshow(img, cmap=None if img.ndim == 3 else "gray", interpolation="nearest")
        a.set(xticks=[], yticks=[])
        a.set_title(title, fontsize=7)
    return save_figure(fig, out / "upsampling.png")


def run(*, out: Path, quick: bool, log) -> Outcome:
    from seglab.experiments.training import fit, nuclei_tiles
    from seglab.models import create_model
    from seglab.models.blocks import UPSAMPLE_MODES

    cfg = settings(quick)
    train = nuclei_tiles(cfg["train_tiles"], cfg["size"], seed=0)
    test = nuclei_tiles(cfg["test_tiles"], cfg["size"], seed=10_000)
    ce = nn.CrossEntropyLoss()
    data: dict = {a: {} for a in ARCHITECTURES}
    example: dict = {a: {} for a in ARCHITECTURES}
    for arch in ARCHITECTURES:
        for mode in UPSAMPLE_MODES:
            log(f"{arch} {mode}")
            torch.manual_seed(0)
            model = create_model(arch, num_classes=2, depth=cfg["depth"], base_channels=cfg["base"], upsample=mode)
            curve = fit(model, ce, train.images, train.foreground, steps=cfg["steps"], batch=cfg["batch"])
            scores, pred = score(model, test.images, test.foreground)
            data[arch][mode] = {**scores, "final_loss": curve[-1]["loss"],
                                "parameters": sum(p.numel() for p in model.parameters())}
            example[arch][mode] = pred[0]
    image = ((test.images[0].permute(1, 2, 0).numpy() * 0.25 + 0.5).clip(0, 1))
    figure = _figure(data, example, image, test.foreground[0].numpy(), out)
    wins = [m for m in UPSAMPLE_MODES if data["unet"][m]["boundary_f1"] > data["encdec"][m]["boundary_f1"]]
    holds = len(wins) == len(UPSAMPLE_MODES)
    rows = "; ".join(
        f"{m}: boundary F1 {data['encdec'][m]['boundary_f1']:.3f} without skips vs {data['unet'][m]['boundary_f1']:.3f} "
        f"with, mIoU {data['encdec'][m]['miou']:.3f} vs {data['unet'][m]['miou']:.3f}"
        for m in UPSAMPLE_MODES
    )
    result = (
        f"The claim {verdict(holds)}: the U-Net's skips give a higher boundary F1 than the skip-less encoder-decoder "
        f"for {len(wins)} of {len(UPSAMPLE_MODES)} up-sampling modes. {rows}."
    )
    setup = (
        f"encdec and unet from seglab.models, depth {cfg['depth']}, base channels {cfg['base']}, 2 classes (nucleus "
        f"vs background), one per up-sampling mode; seed 0, {cfg['steps']} Adam steps (lr 1e-3, batch {cfg['batch']}, "
        f"cross-entropy, flips and 90-degree turns) on {cfg['train_tiles']} synthetic H&E tiles of {cfg['size']} px; "
        f"scored on {cfg['test_tiles']} held-out tiles: mIoU over both classes (pooled confusion matrix), boundary F1 "
        "at 2 px tolerance (mean over tiles and classes). " + cfg.get("scaled", "")
    ).strip()
    return Outcome(
        name="upsampling", title="Up-sampling with and without skips",
        claim="Down/up-sampling without skip connections loses spatial detail: for every up-sampling mode, the "
              "U-Net (skips) has a higher boundary F1 than the encoder-decoder without skips.",
        setup=setup, result=result, holds=bool(holds), data={"settings": cfg, "scores": data}, figures=[figure],
    )
