"""Compatibility names for the Lightning pieces of a run, which live in :mod:`emovid.engine.module`.

* :func:`make_module` — a :class:`~emovid.engine.module.TaskModule` (subclass that class to change a hook);
* :func:`make_datamodule` — a :class:`~emovid.engine.module.TaskDataModule`.
"""

from __future__ import annotations

from emovid.config import TrainConfig
from emovid.engine.callbacks import _EpochSetter as _EpochSetter
from emovid.engine.module import TaskDataModule, TaskModule
from emovid.engine.module import _batch_len as _batch_len
from emovid.engine.module import _gather as _gather
from emovid.errors import EmovidError
from emovid.tasks.base import Task, TaskModel


def _lightning():
    try:
        import lightning.pytorch as pl
    except ImportError as e:  # pragma: no cover - a core dependency
        raise EmovidError("training needs Lightning: pip install lightning") from e
    return pl


def make_module(task: Task, model: TaskModel, cfg: TrainConfig, cached: bool) -> TaskModule:
    """The ``LightningModule`` of ``task`` around ``model`` (``cached``: it is fed precomputed embeddings)."""
    return TaskModule(task, model, cfg, cached)


def make_datamodule(task: Task, cfg: TrainConfig, train_loader, eval_loader, epoch_ref) -> TaskDataModule:
    """The data module of ``task``: its datasets over ``train_loader`` / ``eval_loader``, re-drawn per epoch."""
    return TaskDataModule(task, cfg, train_loader, eval_loader, epoch_ref)


__all__ = ["TaskDataModule", "TaskModule", "make_datamodule", "make_module"]
