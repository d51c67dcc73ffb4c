"""A trained run's model folder, written and read without Lightning: ``model.safetensors`` (the best
:class:`~emovid.tasks.base.TaskModel` state dict), ``model_config.yaml`` (what to build to load it) and
``train_config.yaml`` (every option of the run).

Everything that applies a trained model (``predict``, ``extract``, ``search`` and ``index build`` in model mode,
``eval``, ``plot tsne``) loads it through :func:`load_model_dir`, so none of them imports Lightning (3-4 s of a
``search`` call). Training writes it through :func:`save_model_dir` (:class:`emovid.train.checkpoint.ExportBest`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from emovid.config import TrainConfig
from emovid.errors import ModelError
from emovid.tasks.base import Task, TaskModel, get_task
from emovid.utils.io import atomic_open, atomic_path

__all__ = [
    "MODEL_CONFIG",
    "MODEL_FILE",
    "TRAIN_CONFIG",
    "build_task_model",
    "load_model_dir",
    "read_model_dir",
    "save_model_dir",
]


def build_task_model(cfg: TrainConfig, task: Task, pretrained: bool = True) -> TaskModel:
    """The task's model; with ``pretrained`` the backbone starts from ``cfg.pretrained``, which when unset means the
    model's default weights (:func:`~emovid.models.registry.default_weights`; ``none``/``random``: random init)."""
    from emovid.models import create_model, default_weights

    if task.uses_embeddings:  # heads over precomputed embeddings (EmoNeXt recipe)
        return task.build_model(task.make_backbone())
    name = cfg.model or task.default_model
    backbone = create_model(
        name,
        pretrained=default_weights(name, cfg.pretrained) if pretrained else None,
        num_classes=0,
        allow_size_mismatch=cfg.allow_size_mismatch,
        strict=not cfg.allow_size_mismatch,
        **{**_geometry(name, cfg), **cfg.model_args},
    )
    pc = backbone.pretrained_cfg
    changes: dict[str, Any] = {}
    if cfg.num_frames:
        changes["num_frames"] = cfg.num_frames
    if cfg.frame_stride:
        changes["frame_stride"] = cfg.frame_stride
    if cfg.input_size:
        scale = (pc.short_side or min(pc.input_size)) / min(pc.input_size)
        changes.update(input_size=(cfg.input_size, cfg.input_size), short_side=round(cfg.input_size * scale))
    if changes:
        backbone.pretrained_cfg = pc.replace(**changes)
    return task.build_model(backbone)


def _geometry(name: str, cfg: TrainConfig) -> dict[str, Any]:
    """``num_frames`` / ``image_size`` for model functions that build for a clip geometry (VideoMAE's position
    table is generated for it, which is what the official fine-tuning gets for checkpoints without ``pos_embed``)."""
    import inspect

    from emovid.models.registry import get_model_entry

    try:
        params = inspect.signature(get_model_entry(name).fn).parameters
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if cfg.num_frames and "num_frames" in params:
        out["num_frames"] = cfg.num_frames
    if cfg.input_size and "image_size" in params:
        out["image_size"] = cfg.input_size
    return out


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
    cfg, _ = read_model_dir(p)
    task = get_task(cfg.task)(cfg)
    model = build_task_model(cfg, task, pretrained=False)
    sd = load_file(str(p / MODEL_FILE), device=map_location)
    try:
        load_state_dict(model, sd, strict=True, source=str(p / MODEL_FILE))
    except ModelError as e:
        raise ModelError(f"{p}: weights do not match the model in its config ({e.message})") from e
    model.eval()
    return model, cfg, task


def read_model_dir(path: str | os.PathLike) -> tuple[TrainConfig, dict]:
    """The run's :class:`TrainConfig` (its model as the model folder records it) and ``model_config.yaml``.

    Raises:
        ModelError: the folder is not an emovid checkpoint.
    """
    p = Path(path)
    if not (p / MODEL_FILE).exists() or not (p / TRAIN_CONFIG).exists():
        raise ModelError(f"not an emovid checkpoint folder (needs {MODEL_FILE} and {TRAIN_CONFIG})", p)
    data = yaml.safe_load((p / TRAIN_CONFIG).read_text()) or {}
    cfg = TrainConfig.from_dict(data, source=str(p / TRAIN_CONFIG))
    mc = {}
    if (p / MODEL_CONFIG).exists():
        mc = yaml.safe_load((p / MODEL_CONFIG).read_text()) or {}
        cfg.model = mc.get("model", cfg.model)
    return cfg, mc


def _version() -> str:
    from emovid import __version__

    return __version__
