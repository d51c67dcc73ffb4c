"""The training engine: any task, any registered backbone, one Lightning ``Trainer``.

Lightning does the loop, devices (CPU, one or many GPUs, many nodes; DDP; SLURM is detected from the
environment), mixed precision, gradient accumulation and clipping, checkpointing, resume, early stopping,
progress and logging. This package only assembles it:

* :mod:`emovid.train.prepare` — config to task and model (:func:`build_task_model`, :func:`prepare`), clip loaders,
  the videos checked before training (:func:`preflight`).
* :mod:`emovid.engine.module` — :class:`TaskModule`, a ``LightningModule`` around a
  :class:`~emovid.tasks.base.TaskModel` that asks its task for the loss of each batch and, at the end of validation,
  for metrics over all validation videos; :class:`TaskDataModule`, datasets and loaders re-built each epoch so pairs
  can be re-drawn reproducibly. Subclass either and pass it to :func:`train` (``module_class=``,
  ``datamodule_class=``); :mod:`emovid.train.module` keeps the factories :func:`make_module` / :func:`make_datamodule`.
* :mod:`emovid.train.checkpoint` — the checkpoint directory: written when the metric improves, read back by
  :func:`load_model_dir`. The Lightning ``.ckpt`` files, resume and the shared callbacks are the engine's
  (:mod:`emovid.engine.checkpoint`, :mod:`emovid.engine.callbacks`), the same for training and pretraining.
* :mod:`emovid.train.console` — progress bars, Lightning's chatter silenced (:func:`quiet_lightning`), loggers.
* :mod:`emovid.train.run` — :func:`make_trainer` and :func:`train`, the whole run into a checkpoint directory::

      OUTPUT_DIR/
        model.safetensors      best weights (TaskModel state dict)
        model_config.yaml      what to build to load them (model name, task, head options)
        train_config.yaml      every option of the run
        checkpoints/last.ckpt  Lightning state for --resume (best.ckpt: the best epoch's)
        metrics.csv            per-epoch metrics (CSVLogger)
        best_model.pth         intensity task: the IntensityScorer state dict (RankNet-X3D compatibility)
        failures.jsonl         videos skipped because they could not be read
        test_metrics.json      the best model on the dataset's test split, when it has one

* :mod:`emovid.train.optim` — optimisers (``--optimizer adamw|adam|sgd``), LR batch scaling, layer-wise LR decay
  through a backbone's ``group_matcher()`` (``--layer-decay``), the per-step cosine with ``--min-lr`` and VAERR's
  per-epoch cosine.
* :mod:`emovid.train.views` — multi-view testing (``--test-views 2x3``: temporal segments x spatial crops averaged).

DeepSpeed (the Emodiversity fork's ``--enable_deepspeed``) is Lightning's strategy: ``--strategy deepspeed_stage_1``
(or ``deepspeed_stage_2`` / ``_3`` / ``_offload`` ...) with ``--precision 16-mixed`` after ``pip install deepspeed``;
the fork's DeepSpeed config is Adam-W with fp16 dynamic loss scaling and no ZeRO sharding, which stage 1 comes
closest to (it shards only the optimiser state). The optimiser and schedule stay emovid's (``configure_optimizers``),
as Lightning passes them to DeepSpeed.

Every name is importable from :mod:`emovid.train` itself, as before the package was split.
"""

from __future__ import annotations

from emovid.train.checkpoint import (
    MODEL_CONFIG,
    MODEL_FILE,
    TRAIN_CONFIG,
    ExportBest,
    load_model_dir,
    safe_checkpoint_io,
    save_model_dir,
)
from emovid.train.checkpoint import _resume_epoch as _resume_epoch
from emovid.train.checkpoint import _version as _version
from emovid.train.console import _LIGHTNING_INFO_NOISE as _LIGHTNING_INFO_NOISE
from emovid.train.console import _LIGHTNING_WARNINGS as _LIGHTNING_WARNINGS
from emovid.train.console import _NOISE_FILTER as _NOISE_FILTER
from emovid.train.console import _csv_logger as _csv_logger
from emovid.train.console import _DropLightningNoise as _DropLightningNoise
from emovid.train.console import _epoch_label as _epoch_label
from emovid.train.console import make_loggers, make_progress_bar, quiet_lightning
from emovid.train.module import TaskDataModule, TaskModule, make_datamodule, make_module
from emovid.train.module import _batch_len as _batch_len
from emovid.train.module import _EpochSetter as _EpochSetter
from emovid.train.module import _gather as _gather
from emovid.train.module import _lightning as _lightning
from emovid.train.prepare import _loaders as _loaders
from emovid.train.prepare import _note as _note
from emovid.train.prepare import build_task_model, preflight, prepare, run_log, split_note, weights_note
from emovid.train.run import evaluate_split, make_trainer, parse_devices, train

__all__ = [
    "MODEL_CONFIG",
    "MODEL_FILE",
    "TRAIN_CONFIG",
    "ExportBest",
    "TaskDataModule",
    "TaskModule",
    "build_task_model",
    "evaluate_split",
    "load_model_dir",
    "make_datamodule",
    "make_loggers",
    "make_module",
    "make_progress_bar",
    "make_trainer",
    "parse_devices",
    "preflight",
    "prepare",
    "quiet_lightning",
    "run_log",
    "safe_checkpoint_io",
    "save_model_dir",
    "split_note",
    "train",
    "weights_note",
]
