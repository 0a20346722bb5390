"""Claim: on nuclei, the semantic-to-instance route (3-class watershed) is as good as the
embedding routes at the same training budget, and the routes differ in speed.

Each route of :mod:`seglab.experiments.instance_routes` trains with the same recipe and budget
on the same synthetic H&E nuclei; AJI, PQ, training images per second and prediction seconds per
image (network + decoding) on held-out tiles; one tile's result drawn per route.
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

import numpy as np

from seglab.experiments.report import Outcome, new_figure, save_figure, verdict

EMBEDDING_ROUTES = ("embedding", "seeds", "recurrent")
TOLERANCE = 0.02


def settings(quick: bool) -> dict:
    if quick:
        return {"routes": ["three_class", "embedding"], "budget": {"max_steps": 6}, "train_tiles": 4,
                "test_tiles": 2, "size": 96, "overrides": {"patch": 64, "batch_size": 4, "patches_per_image": 2}}
    return {"routes": ["three_class", "distance", "embedding", "seeds"], "budget": {"minutes": 1.0},
            "train_tiles": 12, "test_tiles": 4, "size": 128, "overrides": {},
            "scaled": "Scaled down from six routes (with recurrent and Mask R-CNN), 3 minutes each and 256 px tiles "
                      "(benchmarks/bench_instance_routes.py's defaults) so that the gallery runs on a shared 2-core CPU."}


def _overlay(image: np.ndarray, inst: np.ndarray) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    out = image[..., :3].astype(np.float32) / 255.0 if image.ndim == 3 else np.repeat(image[..., None] / 255.0, 3, -1)
    out = out.copy()
    out[find_boundaries(inst, mode="inner")] = (0.0, 1.0, 0.2)
    return out


def _figure(rows: dict, image: np.ndarray, truth: np.ndarray, out: Path) -> list[str]:
    from seglab.experiments.instance_routes import LABELS

    done = [r for r in rows if "error" not in rows[r]]
    fig = new_figure(2.2 * (len(done) + 1), 2.6)
    axes = np.atleast_1d(fig.subplots(1, len(done) + 1))
    panels = [("reference", truth)] + [(f"{LABELS[r]}\nAJI {rows[r]['aji']:.2f}", rows[r]["example"]) for r in done]
    for ax, (title, inst) in zip(axes, panels, strict=True):
        ax.imshow(_overlay(image, inst))
        ax.set(xticks=[], yticks=[])
        ax.set_title(title, fontsize=7)
    overlays = save_figure(fig, out / "routes-overlays.png")
    fig = new_figure(9, 3)
    ax1, ax2 = fig.subplots(1, 2)
    xs = np.arange(len(done))
    ax1.bar(xs - 0.2, [rows[r]["aji"] for r in done], 0.4, label="AJI")
    ax1.bar(xs + 0.2, [rows[r]["pq"] for r in done], 0.4, label="PQ")
    ax1.set_xticks(xs, [LABELS[r].replace(" ", "\n", 1) for r in done], fontsize=6)
    ax1.set(ylim=(0, 1), title="held-out tiles (mean)")
    ax1.legend(fontsize=7)
    ax2.scatter([rows[r]["images_per_second"] for r in done], [rows[r]["s_per_image"] for r in done])
    for r in done:
        ax2.annotate(r, (rows[r]["images_per_second"], rows[r]["s_per_image"]), fontsize=7)
    ax2.set(xlabel="training images / s", ylabel="prediction s / tile", title="speed")
    return [save_figure(fig, out / "routes.png"), overlays]


def run(*, out: Path, quick: bool, log) -> Outcome:
    from seglab.data.dataset import find_samples
    from seglab.data.io import read_image, read_label
    from seglab.experiments.instance_routes import make_data, score_route, train_route

    cfg = settings(quick)
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="seglab_routes_") as work:
        dirs = make_data(Path(work) / "data", cfg["train_tiles"], cfg["test_tiles"], cfg["size"], 0)
        first = find_samples(dirs["test"])[0]
        image, truth = read_image(first.image), read_label(first.label)
        for route in cfg["routes"]:
            log(f"{route}: training ({cfg['budget']})")
            try:
                result = train_route(route, dirs, Path(work) / "runs", cfg["budget"], **cfg["overrides"])
                scores, predictions = score_route(result.best_checkpoint, dirs["test"], tile=cfg["size"])
                rows[route] = {**scores, "images_per_second": result.images_per_second, "steps": result.steps,
                               "example": predictions[0]}
            except Exception as exc:  # one route's failure is reported, the others still run
                log(traceback.format_exc())
                rows[route] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
        figures = _figure(rows, image, truth, out)
    data = {"settings": cfg, "routes": {r: {k: v for k, v in row.items() if k != "example"} for r, row in rows.items()}}
    return _outcome(data, cfg, figures)


def _outcome(data: dict, cfg: dict, figures: list[str]) -> Outcome:
    from seglab.experiments.instance_routes import LABELS

    rows = data["routes"]
    ok = {r: v for r, v in rows.items() if "error" not in v}
    embeds = [r for r in EMBEDDING_ROUTES if r in ok]
    base = ok.get("three_class")
    holds = base is not None and bool(embeds) and all(base["aji"] >= ok[r]["aji"] - TOLERANCE for r in embeds)
    table = "; ".join(
        f"{LABELS[r]}: AJI {v['aji']:.3f}, PQ {v['pq']:.3f}, {v['images_per_second']:.1f} training img/s, "
        f"{v['s_per_image']:.2f} s per tile to predict" if r in ok else f"{LABELS[r]}: failed ({v['error']})"
        for r, v in rows.items()
    )
    fastest = max(ok, key=lambda r: ok[r]["images_per_second"]) if ok else None
    result = (
        f"The claim {verdict(holds)}: the 3-class watershed's AJI "
        + (f"({base['aji']:.3f}) " if base else "(missing) ")
        + f"is {'within' if holds else 'not within'} {TOLERANCE} of or above every embedding route's. {table}."
        + (f" Fastest to train: {LABELS[fastest]}." if fastest else "")
    )
    budget = ", ".join(f"{k} {v}" for k, v in cfg["budget"].items())
    setup = (
        f"Synthetic H&E nuclei: {cfg['train_tiles']} training tiles (the recipe's validation share held out of them) "
        f"and {cfg['test_tiles']} test tiles of {cfg['size']} px. Every route trains with the packaged nuclei_unet "
        f"recipe (U-Net depth 4, 16 base channels; Mask R-CNN: ResNet-18 FPN with 64 channels) through seglab's "
        f"trainer, budget {budget} per route"
        + (f", overrides {cfg['overrides']}" if cfg["overrides"] else "")
        + "; best checkpoint; tiled prediction; mean over test tiles (PQ at IoU > 0.5). Speeds are wall clock on a "
        "shared 2-core CPU: compare them within this run only. " + cfg.get("scaled", "")
    ).strip()
    return Outcome(
        name="routes", title="Instance routes on nuclei",
        claim=f"On nuclei the semantic-to-instance route (3-class watershed) is at least as good (AJI within {TOLERANCE}) "
              "as the embedding routes at the same CPU training budget; the routes differ in training and prediction speed.",
        setup=setup, result=result, holds=bool(holds), data=data, figures=figures,
    )
