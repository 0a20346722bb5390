"""``seglab demo``: the whole path on the built-in synthetic nuclei, in a few minutes on a CPU.

1. generate train / val / test splits of H&E-like synthetic nuclei (deterministic per seed);
2. train the default instance recipe (U-Net, 3-class target, CE + Dice) within the budget;
3. predict the test split with the best checkpoint (sliding window + marker watershed);
4. evaluate against the test labels and write ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The demo runs the plain command: only the task and the instance route are given; the recipe
# (normalisation, patch, U-Net size, augmentation, decoder options) is planned from the data and
# the budget (seglab.engine.autoconfig), as it is for any user's folder.
DEMO_SETTINGS: dict[str, Any] = {"task": "instance", "method": "three_class", "model": "unet", "workers": 1}


@dataclass(frozen=True)
class DemoSplits:
    train: int = 48
    val: int = 6
    test: int = 10
    size: int = 256


def _write_splits(root: Path, seed: int, splits: DemoSplits, write: Any) -> dict[str, Path]:
    """``write(folder, n=, size=, seed=)`` for train, val and test under ``root`` (seeds differ per split)."""
    dirs = {}
    for offset, (name, n) in enumerate((("train", splits.train), ("val", splits.val), ("test", splits.test))):
        dirs[name] = root / name
        write(dirs[name], n=n, size=splits.size, seed=seed + 1000 * offset)
    return dirs


def make_demo_data(root: Path, *, seed: int, splits: DemoSplits = DemoSplits()) -> dict[str, Path]:
    """Write the three synthetic splits under ``root`` (seeds differ per split)."""
    from seglab.data.synthetic import write_synthetic_dataset

    return _write_splits(root, seed, splits, functools.partial(write_synthetic_dataset, style="he"))


def _train_predict_evaluate(out: Path, dirs: dict[str, Path], settings: dict[str, Any], *, minutes: float,
                            seed: int, workers: int | None, started: float) -> tuple[dict[str, Any], str]:
    """The plain train command on ``dirs``, then predict and evaluate the test split: the report
    (with training and prediction times counted from ``started``) and its printed table."""
    from seglab.config import resolve_config
    from seglab.engine.trainer import train
    from seglab.fileio import write_json_atomic
    from seglab.inference import load_predictor
    from seglab.inference.runner import expand_inputs, predict_files
    from seglab.metrics.evaluate import evaluate_folders, format_table

    overrides = dict(settings, data=str(dirs["train"]), val=str(dirs["val"]), out=str(out / "run"),
                     minutes=minutes, seed=seed)
    if workers is not None:
        overrides["workers"] = workers
    result = train(resolve_config(None, overrides))
    t_train = time.monotonic()
    predict_files(load_predictor(result.best_checkpoint), expand_inputs(dirs["test"] / "images"), out / "predictions")
    t_predict = time.monotonic()
    report = evaluate_folders(out / "predictions", dirs["test"], task=settings["task"])
    report["training"] = {
        "minutes_budget": minutes, "seconds": round(t_train - started, 1), "steps": result.steps,
        "epochs": result.epochs, "images_per_second": round(result.images_per_second, 1),
        "best_checkpoint": str(result.best_checkpoint), f"best_{result.monitor}": result.best_score,
    }
    report["prediction_seconds"] = round(t_predict - t_train, 1)
    write_json_atomic(out / "report.json", report)
    return report, format_table(report)


def run_demo(out: Path, *, minutes: float = 4.0, seed: int = 0, workers: int | None = None) -> dict[str, Any]:
    """Generate, train, predict, evaluate; return the report written to ``out/report.json``."""
    from seglab.fileio import write_text_atomic

    out, t0 = Path(out), time.monotonic()
    dirs = make_demo_data(out / "data", seed=seed)
    report, table = _train_predict_evaluate(out, dirs, DEMO_SETTINGS, minutes=minutes, seed=seed, workers=workers, started=t0)
    write_text_atomic(out / "report.md", _markdown(report, table, out))
    print(table)
    return report


def _markdown(report: dict[str, Any], table: str, out: Path) -> str:
    m = report["metrics"]
    tr = report["training"]
    overlays = sorted((out / "run" / "overlays").glob("*.png"))
    lines = [
        "# seglab demo report",
        "",
        "Built-in synthetic H&E-like nuclei; U-Net sized from the data and the budget, 3-class "
        "target (background / interior / boundary), CE + Dice, marker-controlled watershed.",
        "",
        f"Training: {tr['steps']} steps, {tr['epochs']} epochs, {tr['seconds']} s "
        f"({tr['images_per_second']} patches/s); prediction {report['prediction_seconds']} s.",
        "",
        "| AJI | AJI+ | PQ | SQ | DQ | F1 | Dice |",
        "|---|---|---|---|---|---|---|",
        "| " + " | ".join(f"{m[k]:.4f}" for k in ("aji", "aji_plus", "pq", "sq", "dq", "f1", "dice")) + " |",
        "",
        f"Scores are the mean over test images; {report.get('aggregation', '')}",
        "",
        "```",
        table,
        "```",
        "",
        "![learning curves](run/curves.png)",
        "",
        *[f"![{p.stem}](run/overlays/{p.name})" for p in overlays],
        "",
    ]
    return "\n".join(lines)


# The panoptic demo: the same plain command with --task panoptic on the typed synthetic tissue.
PANOPTIC_SETTINGS: dict[str, Any] = {"task": "panoptic", "method": "three_class", "model": "unet", "workers": 1}


def make_panoptic_demo_data(root: Path, *, seed: int, splits: DemoSplits = DemoSplits()) -> dict[str, Path]:
    """Write the three synthetic panoptic splits (typed nuclei, tissue regions) under ``root``."""
    from seglab.data.synthetic_panoptic import write_panoptic_dataset

    return _write_splits(root, seed, splits, write_panoptic_dataset)


def run_panoptic_demo(out: Path, *, minutes: float = 4.0, seed: int = 0, workers: int | None = None) -> dict[str, Any]:
    """Generate typed tissue, train the panoptic recipe, predict and evaluate the test split;
    write ``out/report.json`` and ``out/report.md``; return the report."""
    from seglab.fileio import write_text_atomic

    out, t0 = Path(out), time.monotonic()
    dirs = make_panoptic_demo_data(out / "data", seed=seed)
    report, table = _train_predict_evaluate(out, dirs, PANOPTIC_SETTINGS, minutes=minutes, seed=seed, workers=workers, started=t0)
    tr = report["training"]
    lines = ["# seglab panoptic demo report", "",
             "Built-in synthetic H&E tissue: regions background (glass), stroma, epithelium (stuff) and typed "
             "nuclei tumour, lymphocyte, stromal, epithelial (things). U-Net with the 3-class instance head and "
             "a class head, trained jointly; watershed instances fused with the class probabilities.", "",
             f"Training: {tr['steps']} steps, {tr['epochs']} epochs, {tr['seconds']} s; prediction "
             f"{report['prediction_seconds']} s.", "", "```", table, "```", "",
             "![overlay](predictions/" + sorted(p.name for p in (out / "predictions").glob("*_overlay.png"))[0] + ")", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    print(table)
    return report
