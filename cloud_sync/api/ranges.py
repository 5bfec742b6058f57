"""HTTP byte ranges (RFC 9110 section 14): one range per request, which is what resuming
downloaders send; anything else is a 416 with ``Content-Range: bytes */SIZE``."""

from __future__ import annotations

import re

from cloud_sync.api.errors import ApiError

SINGLE = re.compile(r"^bytes=(\d*)-(\d*)$")


def unsatisfiable(size: int, why: str) -> ApiError:
    """The 416 answer for a file of ``size`` bytes."""
    return ApiError(416, f"{why} (the file is {size} bytes)", {"Content-Range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range`` header asks for, or None for the whole
    file; ApiError 416 when it is malformed, has several ranges, or lies outside the file."""
    if header is None:
        return None
    match = SINGLE.match(header.strip().replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        raise unsatisfiable(size, f"Range {header[:60]!r} is not one 'bytes=FIRST-[LAST]' or "
                                  "'bytes=-SUFFIX' range")
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable(size, f"Range {header!r} asks for no bytes")
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise unsatisfiable(size, f"Range {header!r} starts past the end")
    return start, end
