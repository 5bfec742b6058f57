"""Errors raised while finding or validating hardware profiles."""

from edge_agent.errors import EdgekitError


class ProfileError(EdgekitError):
    """A profile is missing, unreadable or invalid; the message says which file and field."""
