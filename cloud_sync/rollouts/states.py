"""Rollout states shared without imports, and how rollout and device states read to a
person (stdlib only: the CLI's ``rollout`` commands use it without the cloud's database
packages, and the store's retention without importing the rollout machinery)."""

from __future__ import annotations

TERMINAL = ("done", "rolled_back")  # a finished rollout: its devices are released
STOPPED = ("halted", "rolling_back", "rolled_back")  # a rollout that sends nothing more


def shown_device_state(rollout_state: str, device_state: str) -> str:
    """A rollout device's state as a person should read it: a device still ``pending``
    in a halted rollout will never be sent the version (``not_sent``)."""
    return "not_sent" if rollout_state in STOPPED and device_state == "pending" else device_state
