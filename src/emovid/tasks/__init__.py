"""Training tasks: each module is one task (labels + head + loss + metrics) registered by name.

The built-in task modules are imported when a task is first asked for (:func:`get_task`), so applying one trained
model does not import every task's dependencies (torchmetrics, scipy, ...); :func:`load_all_tasks` registers them
all at once.
"""

from emovid.tasks.base import TASKS, Task, TaskModel, get_task, load_all_tasks, register_task

__all__ = ["TASKS", "Task", "TaskModel", "get_task", "load_all_tasks", "register_task"]
