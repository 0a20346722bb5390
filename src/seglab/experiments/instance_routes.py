"""The instance routes, side by side: one setup shared by ``seglab experiment routes`` and
``benchmarks/bench_instance_routes.py``.

Routes: 3-class watershed, distance watershed, discriminative embedding (De Brabandere et al.
2017), seeds (Fathi et al. 2017), recurrent pixel embedding (Kong & Fowlkes 2018) and Mask R-CNN
(He et al. 2017). Every route trains through the same :func:`seglab.engine.trainer.train` on the
built-in H&E-like synthetic nuclei (the packaged ``nuclei_unet`` recipe, only the route's keys
changed), predicts held-out tiles through the same tiled predictor from its best checkpoint, and
is scored with seglab's metrics (mean over tiles; PQ and F1 match at IoU > 0.5).

Process-wide settings (torch threads, Lightning's console noise) are the caller's, as for
``train``: the CLI and the benchmark call :func:`seglab.cli.process.configure_training`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

# route -> config overrides on top of common_settings() (the same train() call for every route)
ROUTES: dict[str, dict[str, Any]] = {
    "three_class": {"method": "three_class"},
    "distance": {"method": "distance"},
    "embedding": {"method": "embedding"},
    "seeds": {"method": "seeds"},
    "recurrent": {"method": "recurrent"},
    "maskrcnn": {
        "model": "maskrcnn",
        "model_kwargs": {"backbone": "resnet18_fpn", "fpn_channels": 64, "rois_per_image": 64,
                         "representation_size": 256, "mask_channels": 64},
        "lr": 1e-3,
    },
}
LABELS = {
    "three_class": "3-class watershed",
    "distance": "distance watershed",
    "embedding": "discriminative embedding",
    "seeds": "seeds (Fathi)",
    "recurrent": "recurrent (Kong-Fowlkes)",
    "maskrcnn": "Mask R-CNN r18-FPN",
}


def common_settings() -> dict[str, Any]:
    """The demo's recipe (the packaged nuclei_unet), shared by every route."""
    from seglab.config import find_config, load_yaml

    recipe = load_yaml(find_config("nuclei_unet"))
    return {**recipe, "overlays": 1, "seed": 0}


def make_data(root: Path, n_train: int, n_test: int, size: int, seed: int) -> dict[str, Path]:
    """Train (with its held-out validation share) and test tiles, different seeds."""
    from seglab.data.synthetic import write_synthetic_dataset

    dirs = {"train": root / "train", "test": root / "test"}
    write_synthetic_dataset(dirs["train"], n=n_train, size=size, seed=seed)
    write_synthetic_dataset(dirs["test"], n=n_test, size=size, seed=seed + 1000)
    return dirs


def train_route(route: str, dirs: dict[str, Path], out: Path, budget: dict[str, Any], **overrides: Any) -> Any:
    """Train ``route`` on ``dirs["train"]`` into ``out/route``; ``budget``: ``{"minutes": m}`` or ``{"max_steps": n}``."""
    from seglab.config import resolve_config
    from seglab.engine.trainer import train

    settings = {**common_settings(), **ROUTES[route], **overrides, "data": str(dirs["train"]), "out": str(out / route), **budget}
    return train(resolve_config(None, settings), plain_log=True)


def score_route(checkpoint: Path, test_dir: Path, tile: int) -> tuple[dict[str, float], list[np.ndarray]]:
    """Predict every test tile with the tiled predictor: mean metrics, seconds per image, predictions."""
    from seglab.data.dataset import find_samples
    from seglab.data.io import read_image, read_label
    from seglab.inference import load_predictor
    from seglab.metrics import InstanceMetrics

    predictor = load_predictor(checkpoint, tile=tile)
    metrics = InstanceMetrics()
    seconds, predictions = [], []
    for sample in find_samples(test_dir):
        image = read_image(sample.image)
        t0 = time.perf_counter()
        pred = predictor.predict(image)["instances"]
        seconds.append(time.perf_counter() - t0)
        metrics.update(read_label(sample.label), pred)
        predictions.append(np.asarray(pred))
    mean = metrics.compute()["mean"]
    scores = {**{k: float(mean[k]) for k in ("aji", "aji_plus", "pq", "f1")}, "s_per_image": float(np.mean(seconds))}
    return scores, predictions
