"""How far the metric may drop from the original model's: absolute or relative.

``0.01`` allows the metric to fall by 0.01 in its own units (one accuracy point when
the metric is a fraction). ``1%`` allows a drop of 1 % of the baseline metric
(0.0098 for a baseline of 0.98). The build rejects every candidate below
``baseline - allowed_drop``.
"""

from __future__ import annotations

from dataclasses import dataclass

from compress.errors import CompressError


@dataclass(frozen=True)
class Tolerance:
    """A parsed ``--tolerance``: ``value`` is absolute, or a fraction of the baseline."""

    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str | float) -> Tolerance:
        """``"0.01"`` (absolute) or ``"1%"`` (relative to the baseline metric)."""
        raw = str(text).strip()
        relative = raw.endswith("%")
        try:
            value = float(raw[:-1] if relative else raw)
        except ValueError:
            raise CompressError(f"--tolerance {raw!r} is not a number; use e.g. 0.01 "
                                "(absolute) or 1% (relative to the baseline)") from None
        if value < 0 or value != value:
            raise CompressError(f"--tolerance {raw!r} must be >= 0")
        return cls(value / 100.0 if relative else value, relative)

    def allowed_drop(self, baseline: float) -> float:
        """The largest metric drop allowed below ``baseline``."""
        return abs(baseline) * self.value if self.relative else self.value

    def describe(self) -> str:
        """How the tolerance was given, for reports."""
        return f"{self.value * 100:g}% of baseline" if self.relative else f"{self.value:g} absolute"

    def to_dict(self) -> dict[str, float | bool]:
        """Plain JSON for reports and manifests."""
        return {"value": self.value, "relative": self.relative}
