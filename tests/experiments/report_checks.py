"""Checks every experiment's files share: they exist, are small, and the text agrees with the JSON."""

from __future__ import annotations

import json
from pathlib import Path

MAX_PNG_BYTES = 300_000


def load_outcome(out: Path, name: str) -> dict:
    """Read ``out/NAME.json`` and check ``NAME.md`` and the figures against it; return the JSON."""
    record = json.loads((out / f"{name}.json").read_text())
    md = (out / f"{name}.md").read_text()
    assert record["name"] == name and isinstance(record["holds"], bool)
    assert record["figures"], "an experiment draws at least one figure"
    for figure in record["figures"]:
        path = out / figure
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < MAX_PNG_BYTES
        assert f"]({figure})" in md
    assert record["result"] in md and record["claim"] in md and record["setup"] in md
    said = "The claim holds" in record["result"]
    denied = "The claim does not hold" in record["result"]
    assert said != denied and said == record["holds"], "the paragraph's verdict must be the JSON's"
    return record
