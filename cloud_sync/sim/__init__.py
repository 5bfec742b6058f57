"""Fleet simulator: many devices speaking the real protocol over real MQTT connections.

- ``reference``: telemetry drawn from a bundle's reference statistics (or a synthetic one),
  with optional drift.
- ``device``: one device's ids, seq counters and messages.
- ``loop``: many paho clients on one selector.
- ``fleet`` / ``shard``: settings, processes, the schedule, the report.
"""

from cloud_sync.sim.fleet import Credential, SimReport, SimSettings, read_credentials, run_fleet

__all__ = ["Credential", "SimReport", "SimSettings", "read_credentials", "run_fleet"]
