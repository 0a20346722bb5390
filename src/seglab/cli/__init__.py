"""The ``seglab`` command line: parses, calls the library, prints.

Each sub-command lives in its own module of this package with two functions:
``register(subparsers)`` adds its parser and ``run(args) -> int`` does the work. Modules import
only the standard library at top level, so ``seglab --help`` answers in well under a second;
torch and friends are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from seglab import __version__

# name -> module; explicit so that `grep` finds where each command goes.
COMMANDS = {
    "data": "seglab.cli.data",
    "models": "seglab.cli.models",
    "train": "seglab.cli.train",
    "predict": "seglab.cli.predict",
    "evaluate": "seglab.cli.evaluate",
    "demo": "seglab.cli.demo",
    "experiment": "seglab.cli.experiment",
    "export": "seglab.cli.export",
    "serve": "seglab.cli.serve",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``seglab: error: ...``, exit 2), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("seglab").strip()
        self.exit(2, f"seglab: error: {where + ': ' if where else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seglab",
        description="Semantic, instance and panoptic segmentation: data, models, training, prediction, metrics.",
    )
    parser.add_argument("--version", action="version", version=f"seglab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error
        return int(exc.code or 0)
    from seglab.errors import SeglabError

    try:
        return int(args.run(args) or 0)
    except SeglabError as exc:
        print(f"seglab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (permission, read-only, disk full): still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"seglab: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seglab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
