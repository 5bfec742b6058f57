"""What the demo runs: the task, the fleet, the shift, the phases' lengths and the output
folder.

Two sizes per task: ``full`` (``make demo``: three devices, a few minutes of traffic,
<= 10 min on 2 cores) and ``small`` (the CI end-to-end tests: the same flow with shorter
phases and fewer training epochs). Each task (``edgekit.demo.tasks``) says what its sizes
change from these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_agent.errors import EdgekitError

FLEET = "demo"


@dataclass(frozen=True)
class DeviceSpec:
    """One demo device: its id, the hardware profile its bundle is built for, and whether
    its input stream is shifted in the drift phase."""

    device_id: str
    profile: str
    shifted: bool


DEFAULT_DEVICES = (DeviceSpec("pi-kitchen", "rpi4", True),
                   DeviceSpec("jetson-dock", "jetson-orin-nano", True),
                   DeviceSpec("x86-lab", "x86-64", False))


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo needs; ``for_size`` gives the full or the small run."""

    out: Path = Path("demo-out")
    task: str = "classification"
    broker: str | None = None
    arch: str = ""                   # the task's default when empty
    epochs: int | None = None
    shift: str = ""                  # the task's default when empty
    keep_running: bool = False
    devices: tuple[DeviceSpec, ...] = DEFAULT_DEVICES
    rate_hz: float = 10.0            # predictions a second per device
    window_s: float = 10.0           # drift windows
    baseline_s: float = 35.0         # traffic before the shift: drift must stay quiet
    trigger_timeout_s: float = 120.0
    retrain_epochs: int | None = 6
    build_budget_s: float = 120.0    # --time-budget of each edgekit build
    retrain_timeout_s: float = 420.0
    bake_s: float = 15.0
    rollout_timeout_s: float = 240.0
    recovery_s: float = 25.0         # traffic on fresh digits after the rollout
    min_recovered: float = 0.9       # the task's figure of merit on the shifted streams
    recovered_share: float | None = None  # ... or this share of the drop made up
    retrain_extra: dict[str, str] = field(default_factory=dict)

    @property
    def profiles(self) -> list[str]:
        """The profiles to build, in the devices' order, without repeats."""
        return list(dict.fromkeys(d.profile for d in self.devices))

    @property
    def shifted(self) -> list[str]:
        """Ids of the devices whose stream shifts."""
        return [d.device_id for d in self.devices if d.shifted]

    def check(self) -> DemoSettings:
        """One-line errors for settings the demo cannot run with."""
        from edgekit.demo.tasks import task_for

        task = task_for(self.task)
        if self.shift not in task.shifts:
            raise EdgekitError(f"unknown shift {self.shift!r} for the {task.name} demo; "
                               f"choose one of {', '.join(task.shifts)}")
        if self.arch not in task.archs:
            raise EdgekitError(f"unknown arch {self.arch!r} for the {task.name} demo; "
                               f"choose one of {', '.join(task.archs)}")
        if len(self.devices) < 3:
            raise EdgekitError("the demo needs at least 3 devices")
        if len(self.shifted) < 2:
            raise EdgekitError("the demo shifts at least 2 devices (the trigger needs 2)")
        if self.out.exists() and not self.out.is_dir():
            raise EdgekitError(f"--out {self.out} is a file; give a folder")
        return self


SIZES = ("full", "small")


def for_size(size: str, task: str = "classification", **over: object) -> DemoSettings:
    """The settings of a named size (``full`` or ``small``) of a task, ``over`` on top."""
    from edgekit.demo.tasks import task_for

    plugin = task_for(task)
    if size not in SIZES:
        raise EdgekitError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    given = {k: v for k, v in over.items() if v is not None}
    defaults = {"arch": plugin.default_arch, "shift": plugin.default_shift}
    return replace(DemoSettings(), task=task,
                   **{**defaults, **plugin.sizes[size], **given}).check()
