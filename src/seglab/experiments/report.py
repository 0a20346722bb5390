"""What an experiment hands back, and how it is written: ``NAME.json``, ``NAME.md``, figures.

The paragraph of ``NAME.md`` is generated from the numbers by the experiment itself; this
module only lays it out. ``verdict`` is the one place the words "holds" / "does not hold" come
from, so the text and the JSON's ``holds`` always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglab.fileio import atomic_path, write_json_atomic, write_text_atomic

DPI = 80


@dataclass
class Outcome:
    """One experiment's result.

    Attributes:
        name: the experiment's command name (``memory``, ``checkerboard``, ...).
        title: a short heading.
        claim: the lecture's claim, as tested.
        setup: models, data, sizes, steps: enough to rerun it by hand.
        result: one paragraph generated from ``data`` (it states the verdict).
        holds: whether the claim held on these numbers.
        data: every number plotted (JSON-serialisable).
        figures: file names of the figures, relative to the output folder.
    """

    name: str
    title: str
    claim: str
    setup: str
    result: str
    holds: bool
    data: dict[str, Any]
    figures: list[str] = field(default_factory=list)


def verdict(holds: bool) -> str:
    """``"holds"`` or ``"does not hold"``."""
    return "holds" if holds else "does not hold"


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot: the process's backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path, *, dpi: int = DPI) -> str:
    """Write ``fig`` to ``path`` (PNG, atomically); return the file name."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path.name


def markdown(outcome: Outcome) -> str:
    """``NAME.md``: title, claim, setup, result paragraph, figures."""
    lines = [f"# {outcome.title}", "", f"**Claim.** {outcome.claim}", "", f"**Setup.** {outcome.setup}", "",
             f"**Result.** {outcome.result}", ""]
    lines += [f"![{outcome.name}]({name})" for name in outcome.figures]
    return "\n".join(lines) + "\n"


def write_outcome(outcome: Outcome, out: Path) -> None:
    """Write ``out/NAME.json`` and ``out/NAME.md`` (the figures are already there)."""
    record = {k: getattr(outcome, k) for k in ("name", "title", "claim", "setup", "holds", "result", "figures", "data")}
    write_json_atomic(out / f"{outcome.name}.json", record)
    write_text_atomic(out / f"{outcome.name}.md", markdown(outcome))


def read_outcome(path: Path) -> Outcome:
    """An ``Outcome`` back from its ``NAME.json``."""
    import json

    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return Outcome(**{k: record[k] for k in ("name", "title", "claim", "setup", "result", "holds", "data", "figures")})


def write_index(outcomes: list[Outcome], out: Path) -> None:
    """``out/index.md`` (a table of claims and verdicts, then each result) and ``out/index.json``."""
    lines = ["# The lecture's claims, reproduced", "", "| experiment | claim | verdict |", "|---|---|---|"]
    lines += [f"| [{o.name}]({o.name}.md) | {o.claim} | {verdict(o.holds)} |" for o in outcomes]
    for o in outcomes:
        lines += ["", f"## {o.title}", "", o.result, ""]
        lines += [f"![{o.name}]({name})" for name in o.figures]
    write_text_atomic(out / "index.md", "\n".join(lines) + "\n")
    write_json_atomic(out / "index.json", [{"name": o.name, "holds": o.holds, "figures": o.figures} for o in outcomes])
