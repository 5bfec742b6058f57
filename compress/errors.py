"""Errors raised by the compression side; each message is one line saying what to fix."""

from edge_agent.errors import EdgekitError


class CompressError(EdgekitError):
    """A compression step (pruning, distillation, quantization) cannot do what was asked."""


class RecipeError(CompressError):
    """A recipe file or value is invalid; the message names the field."""


class UserCodeError(CompressError):
    """The user's model factory, weights or data function cannot be used as given."""
