"""Atomic file output: write to a temporary file in the target folder, then rename.

An interrupted run never leaves a half-written file that looks complete: either the old file (or
none) is there, or the whole new one. The file gets the mode a plain ``open()`` would give it
(``0o666`` less the umask), so outputs are as shareable as the user's other files; ``durable=True``
also survives a power cut (fsync of the file before the rename, of the folder after it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _create_beside(path: Path) -> Path:
    """Create an empty, new temporary file beside ``path`` with mode ``0o666`` less the umask.

    ``tempfile.mkstemp`` would force ``0o600``; ``os.open`` with ``0o666`` lets the kernel apply
    the umask, as for any file the user creates.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` to disk; a folder only where the platform allows it (not on Windows)."""
    if directory:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
    else:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows flushes writable handles only
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps the final suffix so that writers that choose a format by extension
    (Pillow, tifffile, matplotlib) behave as they would on the real name. The file's mode is
    ``0o666`` less the process umask, as with ``open()``.

    Args:
        path: the final file.
        durable: fsync the file before the rename and its folder after it (where the platform
            supports folder fsync), so that after a crash or power cut the name holds either the
            old or the complete new content. Costs a disk flush: meant for checkpoints.

    Example:
        >>> with atomic_path("out/mask.png") as tmp:
        ...     Image.fromarray(mask).save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, directory=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
