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

    Raises:
        DataError: naming ``path`` when its folder cannot be created or written, or the
            rename fails (a folder of that name).

    Example:
        >>> with atomic_path("out/mask.png") as tmp:
        ...     Image.fromarray(mask).save(tmp)
    """
    from seglab.errors import DataError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_beside(path)
    except OSError as exc:  # a file in the way, no permission, a read-only file system
        raise DataError(path, f"cannot write ({exc.strerror or type(exc).__name__})") from None
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder of that name
            raise DataError(path, f"cannot write ({exc.strerror or type(exc).__name__})") from None
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


def _check_can_create(folder: Path, path: Path, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created: its nearest existing ancestor is one."""
    from seglab.errors import DataError

    probe = folder.absolute()
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    except PermissionError:  # a parent folder that may not be searched
        raise DataError(path, f"cannot write {what}: permission denied on {probe}") from None
    if not probe.is_dir():
        if probe == path.absolute():  # the output folder itself
            raise DataError(path, f"{what} must be a folder, but this is a file")
        raise DataError(path, f"cannot create {what}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(path, f"cannot write {what}: permission denied on {probe}")


def check_output_dir(path: str | os.PathLike[str], what: str = "the output") -> Path:
    """Fail before any work when ``path`` cannot become a writable output folder; creates nothing.

    Args:
        path: the folder (it may not exist yet).
        what: how the error names it, e.g. the flag that gave it (``"--out"``).

    Raises:
        DataError: ``path`` is a file, a file stands where a parent folder should be, or the
            folder (or its nearest existing parent) is not writable.
    """
    path = Path(path)
    _check_can_create(path, path, what)
    return path


def check_output_file(path: str | os.PathLike[str], what: str = "the output") -> Path:
    """Fail before any work when ``path`` cannot be written as a file (see :func:`check_output_dir`).

    Raises:
        DataError: ``path`` is a folder, or its folder cannot be created or written.
    """
    from seglab.errors import DataError

    path = Path(path)
    _check_can_create(path.parent, path, what)
    if path.is_dir():
        raise DataError(path, f"{what} must be a file, but this is a folder")
    return path
