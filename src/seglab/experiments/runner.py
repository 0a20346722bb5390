"""Run experiments by name and write their files (see :mod:`seglab.experiments`)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path

from seglab.errors import unknown_choice
from seglab.experiments.report import Outcome, read_outcome, write_index, write_outcome

# name -> module with ``run(*, out: Path, quick: bool, log) -> Outcome``
EXPERIMENTS = {
    "memory": "seglab.experiments.memory",
    "receptive-field": "seglab.experiments.receptive_field",
    "checkerboard": "seglab.experiments.checkerboard",
    "upsampling": "seglab.experiments.upsampling",
    "imbalance": "seglab.experiments.imbalance",
    "routes": "seglab.experiments.routes",
}


def _quiet(message: str) -> None:
    pass


def run_experiment(name: str, *, out: str | Path, quick: bool = False, log: Callable[[str], None] = _quiet) -> Outcome:
    """Run experiment ``name`` and write ``out/NAME.json``, ``out/NAME.md`` and its figures.

    ``out/index.md`` is rewritten to list every experiment whose JSON the folder holds.

    Raises:
        ConfigError: unknown name (the valid ones listed).
    """
    if name not in EXPERIMENTS:
        raise unknown_choice("experiment", name, [*EXPERIMENTS, "all"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    outcome = importlib.import_module(EXPERIMENTS[name]).run(out=out, quick=quick, log=log)
    outcome.data["seconds"] = round(time.perf_counter() - start, 1)
    outcome.data["quick"] = quick
    write_outcome(outcome, out)
    write_index([read_outcome(out / f"{n}.json") for n in EXPERIMENTS if (out / f"{n}.json").is_file()], out)
    return outcome


def run_all(*, out: str | Path, quick: bool = False, log: Callable[[str], None] = _quiet) -> list[Outcome]:
    """Run every experiment in ``EXPERIMENTS`` order (``out/index.md`` lists them all at the end)."""
    outcomes = []
    for name in EXPERIMENTS:
        log(f"== {name}")
        outcomes.append(run_experiment(name, out=out, quick=quick, log=log))
    return outcomes
