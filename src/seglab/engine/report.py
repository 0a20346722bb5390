"""Run-folder pictures: learning curves and validation overlays."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seglab.fileio import atomic_path


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """Rows of Lightning's metrics.csv as floats (empty cells dropped)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


RESUMED_LOGS = "resumed"  # a resumed run's CSV log folder, inside the run folder


def fold_resumed_metrics(run_dir: Path) -> None:
    """Append the rows a resumed run logged (``RUN_DIR/resumed/metrics.csv``) to ``metrics.csv``.

    Lightning's CSVLogger deletes the metrics.csv it finds, so a resumed run logs to its own
    folder and its rows are folded in here, when it ends and, for a resume that was killed, when
    the next one starts. Earlier rows at or after the first resumed step are dropped (the part of
    the interrupted run after its last checkpoint, which the resumed run did again).
    """
    part = run_dir / RESUMED_LOGS / "metrics.csv"
    if not part.is_file():
        return
    whole = run_dir / "metrics.csv"
    new, new_keys = _csv_rows(part)
    old, old_keys = _csv_rows(whole) if whole.is_file() else ([], [])
    steps = [float(r["step"]) for r in new if r.get("step") not in ("", None)]
    if steps:
        old = [r for r in old if r.get("step") in ("", None) or float(r["step"]) < min(steps)]
    keys = sorted(set(old_keys) | set(new_keys))  # Lightning's order: sorted
    with atomic_path(whole, durable=True) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(old + new)
    for leftover in (part, part.with_name("hparams.yaml")):
        leftover.unlink(missing_ok=True)
    if not any(part.parent.iterdir()):
        part.parent.rmdir()


def _csv_rows(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader), list(reader.fieldnames or [])


def write_curves(run_dir: Path) -> Path | None:
    """``curves.png``: training loss per step and epoch, validation metrics per epoch."""
    rows = read_metrics_csv(run_dir / "metrics.csv")
    if not rows:
        return None
    from matplotlib.figure import Figure  # no pyplot: the process's backend is left alone

    fig = Figure(figsize=(10, 4))
    ax_loss, ax_val = fig.subplots(1, 2)
    for key, style in (("train/loss_step", "-"), ("train/loss_epoch", "o-"), ("val/loss", "s-")):
        pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), style, label=key, alpha=0.8)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    for key in ("val/aji", "val/pq", "val/miou", "val/dice"):
        pts = [(r["epoch"], r[key]) for r in rows if key in r and "epoch" in r]
        if pts:
            ax_val.plot(*zip(*pts, strict=True), "o-", label=key)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation score")
    ax_val.set_ylim(0, 1)
    ax_val.legend()
    fig.tight_layout()
    out = run_dir / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    return out


@torch.inference_mode()
def write_overlays(run_dir: Path, module: Any, data: Any, *, count: int) -> list[Path]:
    """``overlays/<stem>.png``: predicted instance (or class) contours on validation images."""
    from seglab.data.io import write_image
    from seglab.inference.writers import overlay

    if count <= 0:
        return []
    module = module.eval().cpu()
    dataset = data._dataset(data.val_samples[:count], train=False)
    written = []
    for i in range(min(count, len(dataset))):
        item = dataset[i]
        labels = module.predict_instances(item["image"][None])[0]
        image = (item["image"].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
        out = run_dir / "overlays" / f"{item['stem']}.png"
        write_image(out, overlay(image, labels))
        written.append(out)
    return written


def write_run_report(run_dir: Path, module: Any, data: Any, *, overlays: int) -> None:
    """Curves and overlays for a finished run (rank zero only)."""
    write_curves(run_dir)
    write_overlays(run_dir, module, data, count=overlays)

