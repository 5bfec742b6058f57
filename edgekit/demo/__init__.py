"""``edgekit demo``: the whole loop on one machine (see ``edgekit.demo.run``), for a task
chosen by ``--task`` (``edgekit.demo.tasks``: classification, detection)."""

from edgekit.demo.run import Demo, run_demo
from edgekit.demo.settings import DemoSettings, DeviceSpec, for_size
from edgekit.demo.tasks import DEMO_TASKS, task_for

__all__ = ["DEMO_TASKS", "Demo", "DemoSettings", "DeviceSpec", "for_size", "run_demo",
           "task_for"]
