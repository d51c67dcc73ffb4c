"""The checkpoint directory of a run: written whenever the monitored metric improves, and loaded back.

A run folder holds ``model.safetensors`` (the best :class:`~emovid.tasks.base.TaskModel` state dict),
``model_config.yaml`` (what to build to load it) and ``train_config.yaml`` (every option of the run);
:func:`load_model_dir` rebuilds the model from those files alone. Both live in :mod:`emovid.engine.model_dir`,
which does not import Lightning, and are re-exported here. Lightning's ``.ckpt`` files (``--resume``) are
read through :func:`~emovid.models.hub.load_checkpoint` (:func:`safe_checkpoint_io`); those and the resume
helpers are the engine's (:mod:`emovid.engine.checkpoint`, re-exported here).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from emovid.config import TrainConfig
from emovid.engine.checkpoint import _resume_epoch as _resume_epoch
from emovid.engine.checkpoint import check_run_folder as check_run_folder
from emovid.engine.checkpoint import safe_checkpoint_io as safe_checkpoint_io
from emovid.engine.model_dir import MODEL_CONFIG as MODEL_CONFIG
from emovid.engine.model_dir import MODEL_FILE as MODEL_FILE
from emovid.engine.model_dir import TRAIN_CONFIG as TRAIN_CONFIG
from emovid.engine.model_dir import _version as _version
from emovid.engine.model_dir import load_model_dir as load_model_dir
from emovid.engine.model_dir import save_model_dir
from emovid.tasks.base import Task
from emovid.utils.io import atomic_path


class ExportBest(Callback):
    """Write the checkpoint directory's model files whenever the monitored metric improves (rank 0)."""

    def __init__(self, task: Task, cfg: TrainConfig, out: Path, monitor: str, mode: str | None = None):
        self.task, self.cfg, self.out, self.monitor = task, cfg, out, monitor
        self.mode = mode or task.mode
        self.best: float | None = None
        self.best_metrics: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or getattr(pl_module, "stage", "val") != "val":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if not better:
            return
        self.best = value
        self.best_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.best_metrics["epoch"] = trainer.current_epoch
        if trainer.is_global_zero:
            save_model_dir(pl_module.model, self.cfg, self.out, self.best_metrics)
            if self.cfg.task == "intensity":  # RankNet-X3D: best_model.pth holds the IntensityScorer state dict
                with atomic_path(self.out / "best_model.pth") as tmp:
                    torch.save(pl_module.model.state_dict(), tmp)

    def state_dict(self):
        return {"best": self.best, "best_metrics": self.best_metrics}

    def load_state_dict(self, state):
        self.best = state.get("best")
        self.best_metrics = state.get("best_metrics", {})
