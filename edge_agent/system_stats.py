"""System figures for telemetry: process CPU, RSS, SoC temperature, free disk. Linux, stdlib."""

from __future__ import annotations

import glob
import os
import shutil
import time


class SystemStats:
    """Reads system figures; CPU percent is measured between two calls."""

    def __init__(self, disk_path: str = "/") -> None:
        self._disk_path = disk_path
        self._last = (time.monotonic(), _cpu_seconds())

    def read(self) -> dict[str, float | None]:
        """cpu_percent (of one core, this process), rss_mb, temp_c (or None), disk_free_mb."""
        now, cpu = time.monotonic(), _cpu_seconds()
        wall = max(now - self._last[0], 1e-6)
        percent = 100.0 * (cpu - self._last[1]) / wall
        self._last = (now, cpu)
        return {"cpu_percent": round(percent, 2), "rss_mb": rss_mb(), "temp_c": temperature_c(),
                "disk_free_mb": round(shutil.disk_usage(self._disk_path).free / 1e6, 1)}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb() -> float | None:
    """Resident memory of this process in MB (from /proc), or None where /proc is missing."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 2)


def temperature_c() -> float | None:
    """The hottest thermal zone in °C, where /sys/class/thermal has one (Pi, Jetson)."""
    best = None
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        try:
            with open(path) as fh:
                value = int(fh.read().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        best = value if best is None else max(best, value)
    return best
