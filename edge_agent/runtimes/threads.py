"""How many interpreter threads a model may really use on this machine.

A bundle carries its profile's thread count (4 for a Raspberry Pi 4). More threads
than the CPUs this process may run on cannot help: the runtime's worker threads then
take turns on the same cores and wait for each other whenever anything else runs
(a device whose agent is pinned to some cores, a container with a CPU limit, a
simulated fleet sharing one host). So sessions run with ``fit_threads(requested)``:
the count, capped at the usable CPUs (the process's CPU affinity where the OS has
one, e.g. ``taskset`` or a cpuset, else the core count). The build caps its host
timings the same way (``export.latency.host_threads``).
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity set, else every core); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def fit_threads(requested: int) -> int:
    """``requested`` capped at ``usable_cpus()``; 0 (the runtime's own default) is kept."""
    if requested <= 0:
        return requested
    return min(requested, usable_cpus())
