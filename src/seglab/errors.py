"""User-facing errors.

Every failure a user can cause (bad file, bad flag, bad config) raises a ``SeglabError`` whose
message is one line naming the file (when there is one) and the problem. The CLI prints it as
``seglab: error: <message>`` and exits with status 2; library users catch it like any exception.
"""

from __future__ import annotations

from os import PathLike


class SeglabError(Exception):
    """A problem with the user's input, reported as one line."""


class DataError(SeglabError):
    """A data file is missing, unreadable or inconsistent.

    Args:
        path: the offending file (or folder).
        problem: what is wrong with it, e.g. ``"label shape (64, 64) differs from image (64, 70)"``.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(SeglabError):
    """An unknown name or option; the message lists the valid choices."""


def unknown_choice(kind: str, name: object, choices: object) -> ConfigError:
    """Build the standard 'unknown X' error, listing valid choices in sorted order."""
    valid = ", ".join(sorted(str(c) for c in choices))  # type: ignore[union-attr]
    return ConfigError(f"unknown {kind} {name!r}; valid choices: {valid}")
