"""How the CLI talks: rich tables for people, plain JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def print_json(doc: Any) -> None:
    """Write ``doc`` as indented JSON to stdout, with nothing else around it."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def runtime_text(runtime: dict[str, Any]) -> str:
    """Runtime options as ``key value`` pairs: ``delegate xnnpack, threads 4``."""
    return ", ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in runtime.items()) or "runtime defaults"


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
