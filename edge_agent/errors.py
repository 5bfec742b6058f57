"""The one root exception of edgekit, and the families raised by the agent's contracts.

Every error a user can cause derives from ``EdgekitError`` and carries a message
that fits on one line and says how to fix the problem.
"""


import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message, shortened, without colour codes.

    Third-party errors are often many lines long (or empty); edgekit's one-line error
    messages quote this. An empty message gives the exception's type name.
    """
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(exc).__name__


class EdgekitError(Exception):
    """Root of every error edgekit raises on purpose."""


class BundleError(EdgekitError):
    """A bundle is malformed, hostile, tampered with or does not fit this device."""


class SignatureError(BundleError):
    """A bundle is unsigned, its signature does not verify, or its key is not trusted."""


class ProtocolError(EdgekitError):
    """An MQTT topic or payload does not follow edgekit's protocol."""


class ModelLoadError(EdgekitError):
    """A model file could not be loaded by its runtime, or failed its golden check."""


class ConfigError(EdgekitError):
    """A configuration value is missing or invalid."""
