"""``seglab demo``: generate synthetic nuclei, train, predict, evaluate, report."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train and score the default recipe on built-in synthetic nuclei",
        description="Generate synthetic H&E-like nuclei (train/val/test), train the default instance "
        "recipe within the budget, predict the test split, evaluate, and write OUT/report.json and "
        "OUT/report.md.",
    )
    p.add_argument("--minutes", type=float, default=4.0, help="training budget (default 4)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="DataLoader workers")
    p.add_argument("--task", choices=("instance", "panoptic"), default="instance",
                   help="instance (nuclei) or panoptic (typed nuclei and tissue regions; prints per-class PQ and mPQ+)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seglab.cli.process import configure_training
    from seglab.engine.demo import DEMO_SETTINGS, run_demo, run_panoptic_demo

    configure_training(workers=DEMO_SETTINGS["workers"] if args.workers is None else args.workers)
    if args.task == "panoptic":
        report = run_panoptic_demo(Path(args.out), minutes=args.minutes, seed=args.seed, workers=args.workers)
        m = report["metrics"]
        per_class = "  ".join(f"{name} {c['pq']:.3f}" for name, c in m["per_class"].items())
        print(f"demo: per-class PQ  {per_class}")
        print(f"demo: PQ (all classes) {m['pq']:.4f}  mPQ+ (CoNIC) {m['mpq_plus']:.4f}  mPQ (PanNuke) {m['mpq']:.4f}  "
              f"binary PQ {m['binary_pq']:.4f}  -> {Path(args.out) / 'report.md'}")
        return 0

    report = run_demo(Path(args.out), minutes=args.minutes, seed=args.seed, workers=args.workers)
    m = report["metrics"]
    print(f"demo: AJI {m['aji']:.4f}  PQ {m['pq']:.4f}  Dice {m['dice']:.4f}  -> {Path(args.out) / 'report.md'}")
    return 0
