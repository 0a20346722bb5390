"""The lecture's instance routes side by side: same data, same CPU budget, same scoring.

Routes: 3-class watershed, distance watershed, discriminative embedding (De Brabandere et al.
2017), seeds (Fathi et al. 2017), recurrent pixel embedding (Kong & Fowlkes 2018) and Mask R-CNN
(He et al. 2017). Every route trains through the same ``seglab.engine.trainer.train`` on the
built-in H&E-like synthetic nuclei for ``--minutes`` of wall clock, predicts the held-out test
tiles through the same tiled :class:`seglab.inference.Predictor` from its best checkpoint, and is
scored with seglab's metrics (mean over test tiles; PQ and F1 match at IoU > 0.5).

The semantic-to-instance routes share one U-Net (the packaged ``nuclei_unet`` recipe's: depth 4, 16 base
channels, 128 px patches); Mask R-CNN uses a ResNet-18 with a 64-channel pyramid and light heads (5x faster per step on a CPU
than 256 channels). The last columns
compare with the 3-class watershed baseline (AJI difference, ratio of training speed).

Usage:
    python benchmarks/bench_instance_routes.py [--minutes 3] [--routes embedding,seeds] [--out DIR]

A route that fails (for example one the engine does not offer yet) is reported with its error
and the other routes still run.
"""

from __future__ import annotations

import argparse
import tempfile
import traceback
from pathlib import Path
from typing import Any

# the setup `seglab experiment routes` shares
from seglab.experiments.instance_routes import LABELS, ROUTES, make_data


def train_route(route: str, dirs: dict[str, Path], out: Path, minutes: float) -> Any:
    from seglab.cli.process import configure_training
    from seglab.experiments.instance_routes import common_settings
    from seglab.experiments.instance_routes import train_route as train_one

    configure_training(workers=common_settings()["workers"])  # what `seglab train` does
    return train_one(route, dirs, out, {"minutes": minutes})


def score_route(checkpoint: Path, test_dir: Path, tile: int) -> dict[str, float]:
    """Predict every test tile with the tiled predictor; mean metrics and seconds per image."""
    from seglab.experiments.instance_routes import score_route as score

    return score(checkpoint, test_dir, tile)[0]


def print_table(rows: list[dict[str, Any]], minutes: float, n_test: int, size: int) -> None:
    print(f"\n{minutes:g} min CPU training per route, H&E synthetic nuclei, {n_test} test tiles of {size} px, "
          "mean over tiles (PQ/F1: IoU > 0.5)")
    head = (f"{'route':26s} {'AJI':>6s} {'AJI+':>6s} {'PQ':>6s} {'F1':>6s} {'train img/s':>11s} "
            f"{'pred s/img':>10s} {'steps':>6s} {'dAJI vs 3cls':>12s} {'speed vs 3cls':>13s}")
    print(head)
    print("-" * len(head))
    base = next((r for r in rows if r["route"] == "three_class" and "error" not in r), None)
    for r in rows:
        name = LABELS[r["route"]]
        if "error" in r:
            print(f"{name:26s} failed: {r['error']}")
            continue
        d_aji = f"{r['aji'] - base['aji']:+.3f}" if base else "-"
        speed = f"{r['ips'] / base['ips']:.2f}x" if base and base["ips"] > 0 else "-"
        print(f"{name:26s} {r['aji']:6.3f} {r['aji_plus']:6.3f} {r['pq']:6.3f} {r['f1']:6.3f} {r['ips']:11.1f} "
              f"{r['s_per_image']:10.3f} {r['steps']:6d} {d_aji:>12s} {speed:>13s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per route")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated subset of {','.join(ROUTES)}")
    parser.add_argument("--train-tiles", type=int, default=30)
    parser.add_argument("--test-tiles", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="tile size of the synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = sorted(set(routes) - set(ROUTES))
    if unknown:
        parser.error(f"unknown routes {unknown}; valid: {', '.join(ROUTES)}")
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_routes_"))
    dirs = make_data(root / "data", args.train_tiles, args.test_tiles, args.size, args.seed)
    rows = []
    for route in routes:
        print(f"== {LABELS[route]}: training {args.minutes:g} min", flush=True)
        try:
            result = train_route(route, dirs, root / "runs", args.minutes)
            scores = score_route(result.best_checkpoint, dirs["test"], tile=args.size)
            rows.append({"route": route, "ips": result.images_per_second, "steps": result.steps, **scores})
        except Exception as exc:  # one route's failure must not hide the others' results
            traceback.print_exc()
            rows.append({"route": route, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"})
    print_table(rows, args.minutes, args.test_tiles, args.size)
    print(f"(runs and data in {root})")


if __name__ == "__main__":
    main()
