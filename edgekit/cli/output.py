"""How the CLI talks: rich tables for people, plain JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def people_table(*columns: str, keep: tuple[str, ...] = (), **options: Any) -> Any:
    """A rich table whose cells wrap in a narrow terminal and are never cut (``…``) or
    cropped, with light rules and two spaces between columns so that more fits in 80
    columns. Columns in ``keep`` (names a user types) wrap only when nothing else can;
    ``options`` go to ``rich.table.Table`` (title, box, padding, ...)."""
    from rich import box
    from rich.table import Table

    table = Table(**{"box": box.SIMPLE_HEAD, "show_edge": False, "padding": (0, 1, 0, 0),
                     **options})
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in keep)
    return table


def print_json(doc: Any) -> None:
    """Write ``doc`` as indented JSON to stdout, with nothing else around it."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def local_time(ts: float | None, sep: str = " ") -> str:
    """A Unix time as local date and time (``2026-12-01 21:12:00``), ``-`` for None;
    ``sep`` goes between date and time (a newline keeps a table column narrow)."""
    import datetime

    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def runtime_text(runtime: dict[str, Any]) -> str:
    """Runtime options as ``key value`` pairs: ``delegate xnnpack, threads 4``."""
    return ", ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in runtime.items()) or "runtime defaults"


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit non-zero."""
    from rich.markup import escape

    # escape: messages quote shapes like [batch, 9, boxes], which rich would take for markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
