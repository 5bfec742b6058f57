"""The demo's tasks, by name (``edgekit demo --task NAME``); see ``base.DemoTask``."""

from edgekit.demo.tasks import classification, detection  # noqa: F401  (they register)
from edgekit.demo.tasks.base import DEMO_TASKS, DemoTask, register, task_for

__all__ = ["DEMO_TASKS", "DemoTask", "register", "task_for"]
