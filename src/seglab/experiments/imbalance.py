"""Claim: cross-entropy is dominated by the prevalent class; Dice, Jaccard and generalized Dice
(and to a degree weighted CE and focal) give a small class its due.

Synthetic one-channel tiles: a smooth background texture with white noise, and bright discs of
radius 3 px, as many over the whole data set as make the foreground ``fraction`` of its pixels
(10%, 1%, 0.1%). A small U-Net is trained the same way with each loss of ``seglab.losses``
(multiclass mode, two classes) and scored on held-out tiles of the same fraction: Dice and
recall of the small class, pooled over the tiles; the learning curve of that Dice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from seglab.experiments.report import Outcome, new_figure, save_figure, verdict

FRACTIONS = (0.1, 0.01, 0.001)
LOSSES = ("ce", "weighted_ce", "dice", "jaccard", "generalized_dice", "focal", "ce+jaccard")
RADIUS = 3


def settings(quick: bool) -> dict:
    if quick:
        return {"size": 64, "train_tiles": 32, "test_tiles": 16, "steps": 40, "batch": 8, "every": 20, "base": 8}
    return {"size": 64, "train_tiles": 64, "test_tiles": 32, "steps": 300, "batch": 8, "every": 20, "base": 8,
            "scaled": "Scaled down from 128 px tiles and 16 base channels so that the gallery runs on a shared 2-core CPU. "}


def imbalanced_tiles(n: int, size: int, fraction: float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tiles ``N x 1 x size x size`` and targets ``N x size x size`` (1 = disc) at ``fraction``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-RADIUS:RADIUS + 1, -RADIUS:RADIUS + 1]
    disc = (yy**2 + xx**2) <= RADIUS**2
    discs = max(1, round(fraction * n * size * size / disc.sum()))
    target = np.zeros((n, size, size), dtype=np.int64)
    for tile in rng.integers(n, size=discs):
        cy, cx = rng.integers(RADIUS, size - RADIUS, 2)
        target[tile, cy - RADIUS:cy + RADIUS + 1, cx - RADIUS:cx + RADIUS + 1] |= disc
    texture = ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 3, 3))
    texture /= texture.std() + 1e-8
    image = texture + 0.6 * rng.standard_normal((n, size, size)) + 1.5 * target
    return torch.from_numpy(image[:, None].astype(np.float32)), torch.from_numpy(target)


def make_loss(name: str, fraction: float):
    from seglab.losses import create_loss

    if name == "weighted_ce":  # inverse class frequency
        return create_loss("ce", mode="multiclass", weight=[1.0 / (1 - fraction), 1.0 / fraction])
    return create_loss(name, mode="multiclass")


def small_class_scores(model, images: torch.Tensor, target: torch.Tensor) -> dict:
    """Dice and recall of class 1, pooled over all tiles."""
    with torch.no_grad():
        pred = model(images).argmax(1)
    tp = int(((pred == 1) & (target == 1)).sum())
    fp = int(((pred == 1) & (target == 0)).sum())
    fn = int(((pred == 0) & (target == 1)).sum())
    return {"dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0}


def _figure(data: dict, out: Path) -> str:
    fig = new_figure(12, 3.4)
    axes = fig.subplots(1, len(FRACTIONS) + 1)
    xs = np.arange(len(LOSSES))
    for k, f in enumerate(FRACTIONS):
        row = data["results"][str(f)]
        axes[0].plot(xs, [row[n]["dice"] for n in LOSSES], "o-", label=f"{f:.1%} foreground")
        ax = axes[k + 1]
        for i, name in enumerate(LOSSES):
            curve = row[name]["curve"]
            ax.plot([c["step"] for c in curve], [c["dice"] for c in curve], color=f"C{i}", label=name)
        ax.set(ylim=(0, 1), xlabel="step", title=f"{f:.1%}: small-class Dice (held out)")
    axes[0].set_xticks(xs, [n.replace("_", "\n") for n in LOSSES], fontsize=6)
    axes[0].set(ylim=(0, 1), title="final small-class Dice")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    return save_figure(fig, out / "imbalance.png")


def run(*, out: Path, quick: bool, log) -> Outcome:
    from seglab.experiments.training import fit
    from seglab.models import create_model

    cfg = settings(quick)
    results: dict = {}
    for f in FRACTIONS:
        train_x, train_y = imbalanced_tiles(cfg["train_tiles"], cfg["size"], f, seed=0)
        test_x, test_y = imbalanced_tiles(cfg["test_tiles"], cfg["size"], f, seed=1)
        results[str(f)] = {"measured_fraction": float(train_y.float().mean())}
        for name in LOSSES:
            log(f"{f:.1%} {name}")
            torch.manual_seed(0)
            model = create_model("unet", in_channels=1, num_classes=2, depth=2, base_channels=cfg["base"])
            curve = fit(model, make_loss(name, f), train_x, train_y, steps=cfg["steps"], batch=cfg["batch"],
                        evaluate=lambda m, x=test_x, y=test_y: small_class_scores(m, x, y), every=cfg["every"])
            results[str(f)][name] = {**{k: curve[-1][k] for k in ("dice", "recall")}, "curve": curve}
    data = {"settings": cfg, "fractions": list(FRACTIONS), "losses": list(LOSSES), "results": results}
    figure = _figure(data, out)
    return _outcome(data, cfg, figure)


def _outcome(data: dict, cfg: dict, figure: str) -> Outcome:
    res = data["results"]
    region = ("dice", "jaccard", "generalized_dice")
    checks = {(f, n): res[str(f)][n]["dice"] > res[str(f)]["ce"]["dice"] for f in (0.01, 0.001) for n in region}
    holds = all(checks.values())
    failed = [f"{n} at {f:.1%}" for (f, n), ok in checks.items() if not ok]
    parts = []
    for f in FRACTIONS:
        row = res[str(f)]
        best = max(LOSSES, key=lambda n: row[n]["dice"])
        scores = ", ".join(f"{n} {row[n]['dice']:.3f}/{row[n]['recall']:.3f}" for n in LOSSES)
        parts.append(f"At {f:.1%} foreground (measured {row['measured_fraction']:.2%}) Dice/recall of the small class: "
                     f"{scores}; best {best}")
    result = (
        f"The claim {verdict(holds)}: Dice, Jaccard and generalized Dice "
        + ("each beat plain cross-entropy on the small class's Dice at 1% and 0.1%"
           if holds else f"do not all beat plain cross-entropy at 1% and 0.1% (not better: {', '.join(failed)})")
        + ". " + ". ".join(parts) + "."
    )
    setup = (
        f"One-channel {cfg['size']} px tiles: Gaussian texture (sigma 3 px, unit variance) + white noise (0.6) + 1.5 on "
        f"discs of radius {RADIUS} px placed at random until they cover the fraction of the data set's pixels; "
        f"{cfg['train_tiles']} training tiles and {cfg['test_tiles']} held-out tiles per fraction. seglab U-Net, depth 2, "
        f"base channels {cfg['base']}, seed 0, {cfg['steps']} Adam steps (lr 1e-3, batch {cfg['batch']}, flips and "
        "turns), the same for every loss (seglab.losses, multiclass, two classes; weighted CE: weights 1/frequency; "
        f"focal: gamma 2; CE+Jaccard: sum). Held-out Dice and recall of the small class pooled over the tiles, every "
        f"{cfg['every']} steps. " + cfg.get("scaled", "")
    ).strip()
    return Outcome(
        name="imbalance", title="Class imbalance: which loss finds the small class",
        claim="Cross-entropy is dominated by the prevalent class: with Dice, Jaccard or generalized Dice as the loss, "
              "the small class's Dice is higher than with plain cross-entropy at 1% and at 0.1% foreground.",
        setup=setup, result=result, holds=bool(holds), data=data, figures=[figure],
    )
