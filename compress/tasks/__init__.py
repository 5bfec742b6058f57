"""Build-side task plug-ins: what a model computes decides the build's default metric,
distillation loss, parity rule and reference statistics (``base.BuildTask``).

One plug-in per task in ``TASKS``, looked up by the manifest's ``task.kind``
(``edge_agent.contracts.task``); the device-side half of each task lives in
``edge_agent.tasks``.
"""

from compress.tasks import classification, detection, generic  # noqa: F401  (registers)
from compress.tasks.base import TASKS, BuildTask, build_task, parse_task

__all__ = ["TASKS", "BuildTask", "build_task", "parse_task"]
