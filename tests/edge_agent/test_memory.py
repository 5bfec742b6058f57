"""Freed heap memory goes back to the system after a model load (glibc's malloc_trim)."""

import platform

import numpy as np
import pytest

from edge_agent.memory import release_free_memory


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_freed_large_arrays_leave_the_resident_set():
    # a freed mmapped block raises glibc's mmap threshold: the next blocks of that size
    # come from the heap and stay resident after they are freed, until trimmed
    np.ones(8 << 20, np.uint8)
    blocks = [np.ones(6 << 20, np.uint8) for _ in range(4)]
    last = blocks.pop()  # the heap's top stays in use: only a trim can free the holes below
    del blocks
    before = _rss()
    assert release_free_memory()
    assert before - _rss() > 12 << 20
    assert last.sum() == 6 << 20
