"""Contract versions: ``"MAJOR.MINOR"`` strings, read by major and compared by minor.

A minor release may only add optional fields; anything else (a removed or
renamed field, a new required one, a changed meaning) is a new major. So a
reader accepts every minor of the majors it knows: a document with a newer minor
is read leniently (unknown fields are skipped and counted, see
``edge_agent.contracts.record``), while a document of its own or an older minor
is read strictly (an unknown field there can only be a typo). An unknown major
is refused with one line. The integer ``1`` of the first release reads as
``"1.0"``, so installed bundles and queued messages of that release stay readable.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

_TEXT = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")


class Version(NamedTuple):
    """A contract version; ``str()`` gives the wire form, e.g. ``"1.1"``."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_version(value: Any, field: str, error: type[Exception]) -> Version:
    """``"MAJOR.MINOR"`` (or a legacy integer major) as a Version, else a one-line error."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Version(value, 0)
    match = _TEXT.match(value) if isinstance(value, str) else None
    if match is None:
        raise error(f"field '{field}' must be a version \"MAJOR.MINOR\" such as \"1.1\", "
                    f"got {value!r}")
    return Version(int(match.group(1)), int(match.group(2)))


def check_readable(found: Version, current: Version, what: str, fix: str,
                   error: type[Exception]) -> bool:
    """Refuse an unknown major; True when ``found`` is a newer minor (read leniently)."""
    if found.major != current.major:
        raise error(f"{what} {found} is not supported (this edgekit reads "
                    f"{current.major}.x); {fix}")
    return found.minor > current.minor
