"""Give the heap's freed memory back to the system after a model is loaded or replaced.

Loading a bundle verifies it and runs its golden pair: several input- and output-sized
arrays that are freed at once. glibc keeps such freed heap memory for reuse (its mmap
threshold grows once a large block has been freed), so the agent's resident size would
keep them (about 4 MB for a 640x640 detector) although nothing uses them. ``malloc_trim``
hands them back; on a Pi Zero 2 W's 512 MB that is memory other processes can use. Off
glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

_TRIM = None


def _malloc_trim() -> Any:  # a ctypes function, or False
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        name = ctypes.util.find_library("c")
        try:
            _TRIM = ctypes.CDLL(name).malloc_trim if name else False
        except (OSError, AttributeError):  # not glibc
            _TRIM = False
    return _TRIM


def release_free_memory() -> bool:
    """Return freed heap memory to the system; True where the C library can."""
    trim = _malloc_trim()
    if not trim:
        return False
    try:
        trim(0)
    except OSError as exc:  # never fail the caller over housekeeping
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
