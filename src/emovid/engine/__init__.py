"""The engine every run of emovid stands on, built on Lightning.

* :mod:`emovid.engine.batch` — the batch engine under every per-input command (``analyze``, ``extract``, ``faces
  embed``, ``predict``, ``index build``): a command describes a :class:`Job`, :func:`run` does inputs, resume,
  sharding over ranks, journals and the merged manifest with ``Trainer.predict``.
* :mod:`emovid.engine.module` — :class:`TaskModule` (the ``LightningModule`` around a task's model: loss per batch,
  metrics over the validation set, optimisers) and :class:`TaskDataModule` (its loaders, re-built every epoch).
  Both are ordinary module-level classes: subclass them and pass the subclass to :func:`emovid.train.train`.
* :mod:`emovid.engine.callbacks` — callbacks training and pretraining share (:class:`EpochSetter`).
* :mod:`emovid.engine.model_dir` — a trained run's model folder (``model.safetensors`` + its configs), written by
  training and read by everything that applies the model, without Lightning (:func:`load_model_dir`).
* :mod:`emovid.engine.checkpoint` — the run folder's Lightning checkpoints: ``last.ckpt`` / ``best.ckpt``, the
  guard against resuming nothing or overwriting a run, the epoch a resumed run starts in, and the checkpoint reader
  that unpickles nothing untrusted.

Importing this package imports none of them (and so neither torch nor Lightning): each name below is loaded from
its module the first time it is used, so ``emovid --help`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module of this package that defines it
_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "FAILURES",
            "MANIFEST",
            "Input",
            "InputsDataset",
            "Job",
            "JobModule",
            "JobWriter",
            "device_options",
            "env_rank",
            "merge_journals",
            "read_failures",
            "read_manifest",
            "run",
        ),
        "batch",
    ),
    **dict.fromkeys(("TaskDataModule", "TaskModule"), "module"),
    **dict.fromkeys(("EpochSetter",), "callbacks"),
    **dict.fromkeys(
        ("MODEL_CONFIG", "MODEL_FILE", "TRAIN_CONFIG", "build_task_model", "load_model_dir", "save_model_dir"),
        "model_dir",
    ),
    **dict.fromkeys(
        (
            "CHECKPOINT_DIR",
            "best_checkpoint",
            "check_run_folder",
            "last_checkpoint",
            "resume_epoch",
            "safe_checkpoint_io",
        ),
        "checkpoint",
    ),
}

if TYPE_CHECKING:  # what the lazy loader below hands out, for type checkers and IDEs
    from emovid.engine.batch import (
        FAILURES,
        MANIFEST,
        Input,
        InputsDataset,
        Job,
        JobModule,
        JobWriter,
        device_options,
        env_rank,
        merge_journals,
        read_failures,
        read_manifest,
        run,
    )
    from emovid.engine.callbacks import EpochSetter
    from emovid.engine.checkpoint import (
        CHECKPOINT_DIR,
        best_checkpoint,
        check_run_folder,
        last_checkpoint,
        resume_epoch,
        safe_checkpoint_io,
    )
    from emovid.engine.model_dir import (
        MODEL_CONFIG,
        MODEL_FILE,
        TRAIN_CONFIG,
        build_task_model,
        load_model_dir,
        save_model_dir,
    )
    from emovid.engine.module import TaskDataModule, TaskModule


def __getattr__(name: str) -> Any:
    where = _NAMES.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


__all__ = [
    "CHECKPOINT_DIR",
    "FAILURES",
    "MANIFEST",
    "MODEL_CONFIG",
    "MODEL_FILE",
    "TRAIN_CONFIG",
    "EpochSetter",
    "Input",
    "InputsDataset",
    "Job",
    "JobModule",
    "JobWriter",
    "TaskDataModule",
    "TaskModule",
    "best_checkpoint",
    "build_task_model",
    "check_run_folder",
    "device_options",
    "env_rank",
    "last_checkpoint",
    "load_model_dir",
    "merge_journals",
    "read_failures",
    "read_manifest",
    "resume_epoch",
    "run",
    "safe_checkpoint_io",
    "save_model_dir",
]
