"""Time seglab's panoptic PQ against torchmetrics' PanopticQuality on one 1000 x 1000 map.

One run: 3 stuff classes (regions from a smooth random field) and 5 thing classes (about 500
nuclei from ``bench_metrics.make_ground_truth``, each given a type); the prediction is that map
perturbed nucleus by nucleus (``bench_metrics.perturb``: shifted, eroded, dilated, split,
merged, dropped, false positives), 10 % of the nuclei given a wrong type and the region borders
moved. Both tools compute per-class PQ, SQ and RQ (panopticapi's rules; no void pixels, where
the two agree); the script checks the values agree and prints the median wall time over
repeats and seglab's speed-up. A third row times CoNIC's mPQ+ and PanNuke's mPQ (seglab's
:class:`~seglab.metrics.panoptic.NucleusTypeMetrics`) on the same map, for scale.

    .venv/bin/python benchmarks/bench_panoptic.py [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from bench_metrics import make_ground_truth, perturb  # noqa: E402

from seglab.metrics.panoptic import NucleusTypeMetrics, panoptic_scores  # noqa: E402

STUFFS, THINGS = (0, 1, 2), (3, 4, 5, 6, 7)


def make_maps(rng: np.random.Generator, size: int = 1000) -> tuple[np.ndarray, ...]:
    """(gt class, gt instance, pred class, pred instance), int64 ``size x size``."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), 40)
    regions = np.digitize(field, np.quantile(field, [0.3, 0.65]))  # 3 stuff classes
    gi = make_ground_truth(rng, size).astype(np.int64)
    pi = perturb(rng, gi.astype(np.int32)).astype(np.int64)
    g_type = rng.choice(THINGS, size=int(gi.max()) + 1)
    p_type = rng.choice(THINGS, size=int(pi.max()) + 1)
    p_type[: len(g_type)] = np.where(rng.random(len(g_type)) < 0.9, g_type, p_type[: len(g_type)])
    shifted = np.roll(regions, (6, -4), axis=(0, 1))
    gc = np.where(gi > 0, g_type[gi], regions)
    pc = np.where(pi > 0, p_type[pi], shifted)
    return gc, gi, pc, pi


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from torchmetrics.detection import PanopticQuality

    torch.set_num_threads(args.threads)
    gc, gi, pc, pi = make_maps(np.random.default_rng(args.seed))
    target = torch.from_numpy(np.stack([gc, gi], -1)[None])
    preds = torch.from_numpy(np.stack([pc, pi], -1)[None])

    def torchmetrics_pq():
        metric = PanopticQuality(things=set(THINGS), stuffs=set(STUFFS), return_sq_and_rq=True, return_per_class=True)
        metric.update(preds, target)
        return metric.compute().numpy()

    def nucleus_types():
        acc = NucleusTypeMetrics(classes=THINGS)
        acc.update(gi, gc, pi, pc)
        return acc.compute()

    t_seg, ours = timed(lambda: panoptic_scores(gc, gi, pc, pi, things=THINGS, stuffs=STUFFS), args.repeats)
    t_tm, theirs = timed(torchmetrics_pq, args.repeats)
    t_types, types = timed(nucleus_types, args.repeats)
    order = list(THINGS) + list(STUFFS)  # torchmetrics: things sorted, then stuff sorted
    mine = np.array([[ours["per_class"][c][k] for c in order] for k in ("pq", "sq", "rq")])
    diff = float(np.abs(mine.T - theirs).max())  # torchmetrics: classes x (pq, sq, rq)
    n_gt, n_pred = len(np.unique(gi)) - 1, len(np.unique(pi)) - 1
    print(f"1000 x 1000, {len(THINGS)} thing + {len(STUFFS)} stuff classes, {n_gt} ground-truth and {n_pred} predicted "
          f"nuclei; torch threads {args.threads}; median of {args.repeats}")
    print(f"per-class PQ/SQ/RQ: largest difference seglab vs torchmetrics {diff:.2e}; PQ {ours['pq']:.4f} "
          f"(things {ours['pq_things']:.4f}, stuff {ours['pq_stuff']:.4f})")
    print(f"{'what':<44} {'seconds':>9} {'vs seglab':>10}")
    print(f"{'seglab panoptic_scores':<44} {t_seg:9.4f} {'1.00x':>10}")
    print(f"{'torchmetrics PanopticQuality':<44} {t_tm:9.4f} {t_tm / t_seg:9.1f}x")
    print(f"{'seglab NucleusTypeMetrics (mPQ+, mPQ, bPQ)':<44} {t_types:9.4f} {t_types / t_seg:9.1f}x")
    print(f"mPQ+ (CoNIC) {types['mpq_plus']:.4f}, mPQ (PanNuke) {types['mpq']:.4f}, bPQ {types['bpq']:.4f}")
    if diff > 1e-6:
        raise SystemExit(f"values differ by {diff}")


if __name__ == "__main__":
    main()
