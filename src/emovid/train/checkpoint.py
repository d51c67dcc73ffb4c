"""The checkpoint directory of a run: written whenever the monitored metric improves, and loaded back.

A run folder holds ``model.safetensors`` (the best :class:`~emovid.tasks.base.TaskModel` state dict),
``model_config.yaml`` (what to build to load it) and ``train_config.yaml`` (every option of the run);
:func:`load_model_dir` rebuilds the model from those files alone. Lightning's ``.ckpt`` files (``--resume``) are
read through :func:`~emovid.models.hub.load_checkpoint` (:func:`safe_checkpoint_io`); those and the resume
helpers are the engine's (:mod:`emovid.engine.checkpoint`, re-exported here).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from lightning.pytorch.callbacks import Callback

from emovid.config import TrainConfig
from emovid.engine.checkpoint import _resume_epoch as _resume_epoch
from emovid.engine.checkpoint import check_run_folder as check_run_folder
from emovid.engine.checkpoint import safe_checkpoint_io as safe_checkpoint_io
from emovid.errors import ModelError
from emovid.tasks.base import Task, TaskModel, get_task
from emovid.train.prepare import build_task_model
from emovid.utils.io import atomic_open, atomic_path

MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.yaml"
TRAIN_CONFIG = "train_config.yaml"


def save_model_dir(model: TaskModel, cfg: TrainConfig, out: str | os.PathLike, metrics: dict | None = None) -> None:
    """Write ``model.safetensors`` + ``model_config.yaml`` (+ ``train_config.yaml``) atomically."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / MODEL_FILE) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    backbone = model.feature_extractor
    model_cfg = {
        "model": getattr(backbone, "model_name", cfg.model),
        "task": cfg.task,
        "num_features": int(backbone.num_features),
        "head": {"score": cfg.score, "loss": cfg.loss, "va_bins": cfg.va_bins},
        "pretrained_cfg": backbone.pretrained_cfg.to_dict() if hasattr(backbone, "pretrained_cfg") else None,
        "metrics": metrics or {},
        "emovid_version": _version(),
    }
    with atomic_open(out / MODEL_CONFIG) as f:
        yaml.safe_dump(model_cfg, f, sort_keys=False)
    cfg.save(out / TRAIN_CONFIG)


def load_model_dir(path: str | os.PathLike, map_location: str = "cpu") -> tuple[TaskModel, TrainConfig, Task]:
    """Rebuild a trained model from its checkpoint directory alone.

    Raises:
        ModelError: the folder is not an emovid checkpoint, or its weights do not fit its config.
    """
    from safetensors.torch import load_file

    from emovid.models.hub import load_state_dict

    p = Path(path)
    if not (p / MODEL_FILE).exists() or not (p / TRAIN_CONFIG).exists():
        raise ModelError(f"not an emovid checkpoint folder (needs {MODEL_FILE} and {TRAIN_CONFIG})", p)
    data = yaml.safe_load((p / TRAIN_CONFIG).read_text()) or {}
    cfg = TrainConfig.from_dict(data, source=str(p / TRAIN_CONFIG))
    if (p / MODEL_CONFIG).exists():
        mc = yaml.safe_load((p / MODEL_CONFIG).read_text()) or {}
        cfg.model = mc.get("model", cfg.model)
    task = get_task(cfg.task)(cfg)
    model = build_task_model(cfg, task, pretrained=False)
    sd = load_file(str(p / MODEL_FILE), device=map_location)
    try:
        load_state_dict(model, sd, strict=True, source=str(p / MODEL_FILE))
    except ModelError as e:
        raise ModelError(f"{p}: weights do not match the model in its config ({e.message})") from e
    model.eval()
    return model, cfg, task


def _version() -> str:
    from emovid import __version__

    return __version__


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
