"""Running the ``edgekit`` entry point in-process, as a shell would, for error-path tests."""

from __future__ import annotations

import sys

import pytest


def run_main(*args: object) -> int:
    """Run ``edgekit ARGS`` through main(); returns its exit status (errors are one line)."""
    from edgekit.cli.main import main

    old = sys.argv
    sys.argv = ["edgekit", *[str(a) for a in args]]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = old
    return info.value.code
