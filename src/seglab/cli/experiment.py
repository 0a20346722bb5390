"""``seglab experiment NAME``: reproduce one of the lecture's claims as figures, numbers and a paragraph.

Examples:
    seglab experiment memory --out docs/experiments
    seglab experiment checkerboard --quick --out /tmp/exp
    seglab experiment all --out docs/experiments
"""

from __future__ import annotations

import argparse
import os
import sys

# the names of seglab.experiments.EXPERIMENTS (kept here so that --help imports nothing heavy)
NAMES = ("memory", "receptive-field", "checkerboard", "upsampling", "imbalance", "routes")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="reproduce a lecture claim: figures, numbers and a generated paragraph",
        description="Run an experiment and write DIR/NAME.png (or several PNGs), DIR/NAME.json (every number "
        "plotted) and DIR/NAME.md (claim, setup and a result paragraph generated from the numbers, saying "
        "whether the claim holds). 'all' runs every experiment and writes DIR/index.md.",
    )
    parser.add_argument("name", metavar="NAME", help=f"one of: {', '.join(NAMES)}, all")
    parser.add_argument("--quick", action="store_true", help="small settings: each experiment in under a minute")
    parser.add_argument("--out", default="experiments", help="output folder (default: experiments)")
    parser.set_defaults(run=run)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # the memory experiment runs torch's profiler, whose CPU-only build logs a spurious GPU "ERROR" line
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from seglab.cli.process import configure_training
    from seglab.errors import unknown_choice
    from seglab.experiments import EXPERIMENTS, run_all, run_experiment
    from seglab.experiments.report import verdict
    from seglab.fileio import check_output_dir

    if args.name != "all" and args.name not in EXPERIMENTS:
        raise unknown_choice("experiment", args.name, [*EXPERIMENTS, "all"])
    out = check_output_dir(args.out, "the experiment folder")
    configure_training(workers=0)  # threads for the CPU and a quiet Lightning (the routes experiment trains with it)
    if args.name == "all":
        outcomes = run_all(out=out, quick=args.quick, log=_log)
    else:
        outcomes = [run_experiment(args.name, out=out, quick=args.quick, log=_log)]
    for outcome in outcomes:
        print(f"{outcome.name}: the claim {verdict(outcome.holds)} ({out / (outcome.name + '.md')})")
    if args.name == "all":
        print(f"index: {out / 'index.md'}")
    return 0
