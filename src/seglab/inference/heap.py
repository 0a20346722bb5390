"""Handing freed heap memory back to the system between the steps of a long run.

glibc keeps what a process frees inside its heap and arenas for reuse, so a run's resident size
stays at the highest point any earlier step pushed it to, fragments included: a whole-slide
prediction that allocated a large preview and then a block's probabilities would keep both.
:func:`release_memory` (``malloc_trim(0)``) returns the free pages; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_memory() -> None:
    """Return the heap's free pages to the system (glibc; a no-op elsewhere)."""
    trim = _trim()
    if trim is not None:
        trim(0)
