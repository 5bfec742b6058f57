"""Errors the cloud side raises on purpose; each message is one line that says what to fix."""

from __future__ import annotations

from edge_agent.errors import EdgekitError


class CloudError(EdgekitError):
    """Root of the cloud side's errors."""


class StoreError(CloudError):
    """The database URL is wrong, the database is unreachable, or a migration failed."""


class RegistryError(CloudError):
    """A device, credential or model registry request cannot be done (unknown, duplicate, bad)."""
