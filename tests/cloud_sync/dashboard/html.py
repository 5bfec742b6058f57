"""Reading rendered pages in tests: visible text of table cells, counting rows."""

from __future__ import annotations

import html
import re

INLINE = re.compile(r"</?(?:strong|a|time|code|em)\b[^>]*>")
TAG = re.compile(r"<[^>]+>")
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


def text(fragment: str) -> str:
    """``fragment`` without tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(TAG.sub(" ", INLINE.sub("", fragment))).split())


def cells(page: str) -> list[str]:
    """The text of every innermost table cell of ``page``."""
    return [text(c) for c in CELL.findall(page) if "<td" not in c]


def raw_documents(page: str) -> list[str]:
    """Cells that show a raw dict / JSON document instead of a table."""
    return [c for c in cells(page) if c.startswith(("{", "[{")) or "': " in c or '": ' in c]
