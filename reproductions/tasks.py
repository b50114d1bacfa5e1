"""The tasks a reproduction can belong to, and everything that differs between them.

A `Reproduction` in the registry names its task ("translation" or "captioning"); the task object owns the
data module, the LightningModule class, decoding and scoring a split, the hypothesis file format, the metric
columns and headline metric, the run figures, the paired significance test of the report and the
leaderboard's scoring of a submission. The harness and the leaderboard call these methods and never ask
which task they hold. Importing this package imports no torch; each task loads its heavy modules on use.

Adding a task: subclass `Task` in a new module and add an instance to `TASKS`.
"""

from __future__ import annotations

from .captioning.task import CaptioningTask
from .common.task import Column, Task
from .translation.task import TranslationTask

TASKS: dict[str, Task] = {task.name: task for task in (TranslationTask(), CaptioningTask())}


def get(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; known: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Column", "Task", "get"]
