"""Training tasks: each module is one task (labels + head + loss + metrics) registered by name."""

from emovid.tasks import face_sequence, intensity, retrieval, v2v, valence_arousal, vce  # noqa: F401  (registration)
from emovid.tasks.base import TASKS, Task, TaskModel, get_task, register_task

__all__ = ["TASKS", "Task", "TaskModel", "get_task", "register_task"]
