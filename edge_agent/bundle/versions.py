"""Model versions: a monotonic integer ("7") or a dotted release ("1.4.2").

Versions compare numerically part by part, so "10" > "9" and "1.10" > "1.9".
A bare integer N compares like N.0.0.
"""

from __future__ import annotations

import re

from edge_agent.errors import BundleError

_VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,2}$")


def parse_version(text: str) -> tuple[int, int, int]:
    """The comparable key of a version string; BundleError if it is not one."""
    text = str(text).strip()
    if not _VERSION.match(text):
        raise BundleError(
            f"version {text!r} is not valid; use an integer like 7 or MAJOR.MINOR.PATCH like 1.4.2"
        )
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return (parts[0], parts[1], parts[2])


def is_newer(candidate: str, installed: str) -> bool:
    """True when ``candidate`` is strictly newer than ``installed``."""
    return parse_version(candidate) > parse_version(installed)
