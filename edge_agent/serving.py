"""What the agent serves, owned by one object: the model, its metrics, sampler, probation, settings.

``Serving`` is the single owner of the serving state. Everything that changes it
goes through two operations:

* :meth:`Serving.swap` serves another model (update, rollback): the new model gets
  fresh metrics and a sampler built from the **current runtime settings**, so a
  ``set-config`` made earlier survives the swap.
* :meth:`Serving.apply` changes runtime settings (``set-config``): it validates the
  values, writes them to ``settings.json`` in the state folder (atomically) and
  applies them to the live sampler. At start the saved settings override the
  config file's, so they survive restarts too; ``set-config`` again to change them,
  or delete the file to go back to the config file's values.

Readers (the inference path, telemetry, the HTTP API) take one reference to
``active``/``metrics``/``sampler`` and use it; a swap replaces all three under one
lock, so a reader never mixes two models' objects in one call.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from edge_agent.bundle.archive import atomic_write
from edge_agent.errors import ProtocolError
from edge_agent.metrics import ModelMetrics
from edge_agent.probation import Probation
from edge_agent.sampling import Sampler
from edge_agent.slots import ActiveModel

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
# An interval of 1e300 s would overflow the telemetry timer; a sample over 512 KiB
# would not fit a 1 MiB message once base64-encoded.
SETTING_BOUNDS: dict[str, tuple[float, float]] = {
    "telemetry_interval_s": (0.1, 86400.0), "sample_rate_per_min": (0.0, 6000.0),
    "sample_max_bytes": (64.0, float(512 << 10)), "low_confidence": (0.0, 1.0)}


@dataclass(frozen=True)
class RuntimeSettings:
    """The settings ``set-config`` may change while the agent runs."""

    telemetry_interval_s: float
    sample_rate_per_min: float
    sample_max_bytes: int
    low_confidence: float

    @classmethod
    def from_config(cls, cfg: Any) -> RuntimeSettings:
        """The values of an ``AgentConfig`` (or anything with these attributes)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})

    def changed(self, changes: dict[str, Any]) -> RuntimeSettings:
        """A copy with ``changes`` applied; ProtocolError names a bad key or value."""
        for key, value in changes.items():
            if key not in SETTING_BOUNDS:
                raise ProtocolError(f"unknown setting {key!r}; one of "
                                    f"{', '.join(sorted(SETTING_BOUNDS))}")
            low, high = SETTING_BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not low <= value <= high:
                raise ProtocolError(f"{key} must be between {low} and {high}, got {value!r}")
        typed = {k: int(v) if k == "sample_max_bytes" else float(v) for k, v in changes.items()}
        return replace(self, **typed)


def load_overrides(state_dir: Path) -> dict[str, Any]:
    """Settings saved by earlier ``set-config`` commands ({} when none or unreadable)."""
    path = Path(state_dir) / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {k: v for k, v in doc.items() if k in SETTING_BOUNDS}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring %s (%s); using the config file's settings", path, exc)
        return {}


class Serving:
    """The one owner of the serving state; see the module docstring."""

    def __init__(self, active: ActiveModel, settings: RuntimeSettings, state_dir: Path,
                 new_metrics: Callable[[ActiveModel], ModelMetrics],
                 new_sampler: Callable[[ActiveModel, RuntimeSettings], Sampler]) -> None:
        self._lock = threading.RLock()
        self._state_dir = Path(state_dir)
        self._new_metrics, self._new_sampler = new_metrics, new_sampler
        self.settings = settings
        self.active = active
        self.metrics = new_metrics(active)
        self.sampler = new_sampler(active, settings)
        self.recent_latency: deque[float] = deque(maxlen=500)
        self.probation: Probation | None = None
        self.probation_cmd: str | None = None

    def swap(self, new: ActiveModel) -> ActiveModel:
        """Serve ``new`` with fresh metrics and a sampler from the current settings.

        Returns the model it replaced; the caller closes it.
        """
        metrics, sampler = self._new_metrics(new), self._new_sampler(new, self.settings)
        with self._lock:
            old = self.active
            self.active, self.metrics, self.sampler = new, metrics, sampler
            self.recent_latency.clear()
        return old

    def apply(self, changes: dict[str, Any]) -> list[str]:
        """Validate, persist and apply runtime settings; returns the names applied."""
        with self._lock:
            settings = self.settings.changed(changes)
            saved = dict(load_overrides(self._state_dir), **{k: getattr(settings, k)
                                                             for k in changes})
            atomic_write(self._state_dir / SETTINGS_FILE,
                         json.dumps(saved, indent=1, sort_keys=True).encode())
            self.settings = settings
            self._apply_to_sampler(self.sampler, changes)
        return sorted(changes)

    def _apply_to_sampler(self, sampler: Sampler, changes: dict[str, Any]) -> None:
        s = self.settings
        if "sample_rate_per_min" in changes:
            sampler.bucket.set_rate(s.sample_rate_per_min)
        sampler.max_bytes = s.sample_max_bytes
        sampler.low_confidence = s.low_confidence

    def begin_probation(self, probation: Probation, cmd_id: str | None) -> None:
        """Watch the model just switched in, on behalf of update ``cmd_id``."""
        with self._lock:
            self.probation, self.probation_cmd = probation, cmd_id

    def end_probation(self) -> str | None:
        """Stop watching; returns the cmd_id of the update it watched (None if none ran)."""
        with self._lock:
            if self.probation is None:
                return None
            cmd_id = self.probation_cmd or "probation"
            self.probation, self.probation_cmd = None, None
            return cmd_id

    def settings_dict(self) -> dict[str, Any]:
        """The runtime settings in force, as plain values."""
        return asdict(self.settings)
