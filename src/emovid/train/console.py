"""What a run shows and records: its progress bar, Lightning's console kept quiet, the metric loggers."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any


def _epoch_label(current_epoch: int, max_epochs: int | None) -> str:
    """``Epoch 2/5`` for the second of five epochs (Lightning shows the 0-based index out of ``max_epochs - 1``)."""
    label = f"Epoch {current_epoch + 1}"
    return f"{label}/{max_epochs}" if max_epochs is not None and max_epochs > 0 else label  # -1: bounded by steps


def make_progress_bar():
    """Lightning's progress bar (rich when installed, as Lightning picks it) counting epochs from 1."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE

    if _RICH_AVAILABLE:

        class EpochBar(RichProgressBar):
            def _get_train_description(self, current_epoch: int) -> str:
                text = _epoch_label(current_epoch, self.trainer.max_epochs)
                # padded to the validation bar's label, as Lightning does, so the bars do not flicker
                return f"{text:{len(self.validation_description)}}"

        return EpochBar()

    from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

    class EpochTQDMBar(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, *args: Any) -> None:
            # Lightning's, with the 1-based label set before the bar draws (its own would flash "Epoch 0" first)
            if getattr(self, "_leave", False):
                self.train_progress_bar = self.init_train_tqdm()
            bar = self.train_progress_bar
            bar.reset(total=convert_inf(self.total_train_batches))
            bar.initial = 0
            bar.set_description(_epoch_label(trainer.current_epoch, trainer.max_epochs))

    return EpochTQDMBar()


# Lightning's console chatter that says nothing about this run: advertisements, the device census, the
# "estimating stepping batches" note and "stopped: max_epochs reached" (the summary follows).
_LIGHTNING_INFO_NOISE = re.compile(
    r"💡 Tip:|[GTHI]PU available: |LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES|Loading `train_dataloader` to estimate "
    r"number of stepping batches|`Trainer\.fit` stopped: `max_(epochs|steps)=|Initializing distributed: |"
    r"distributed_backend=|All distributed processes registered|-{40,}",
)
# (message, category, module) of warnings that are Lightning's own business, not the user's:
_LIGHTNING_WARNINGS = (
    # Lightning 2.6 builds torch pytree LeafSpecs, which torch >= 2.10 deprecates
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    # per-step rows are optional in metrics.csv; the epoch rows are always written
    (r"The number of training batches \(\d+\) is smaller than the logging interval", Warning, r"lightning\."),
)


class _DropLightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _LIGHTNING_INFO_NOISE.match(record.getMessage())


_NOISE_FILTER = _DropLightningNoise()


def quiet_lightning(callbacks: list = ()) -> None:
    """Silence the specific Lightning messages above (idempotent); every other message and warning stays.

    Args:
        callbacks: the run's callbacks: for their ``ModelCheckpoint`` folders, Lightning's "exists and is not empty"
            warning is dropped too: ``checkpoints/`` holds this run's own files (``train``/``pretrain`` refuse a
            folder that holds a run unless resuming it), so the warning only ever fires on ``--resume``.
    """
    import warnings

    from lightning.fabric.utilities.rank_zero import rank_zero_module
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            warnings.filterwarnings(
                "ignore", message=re.escape(f"Checkpoint directory {cb.dirpath} exists and is not empty.")
            )

    loggers = {rank_zero_module.log, logging.getLogger("lightning.pytorch.utilities.rank_zero")}
    loggers.add(logging.getLogger("lightning.fabric.utilities.distributed"))  # "Initializing distributed: ..."
    for logger in loggers:
        if _NOISE_FILTER not in logger.filters:
            logger.addFilter(_NOISE_FILTER)
    for message, category, module in _LIGHTNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def make_loggers(out: Path, resume_from: Path | None) -> list:
    """``out/metrics.csv`` (kept across ``--resume``) and, when tensorboard is installed, ``out/tb``."""
    loggers = [_csv_logger(out, resume_from)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tb", version=""))
    except ImportError:
        pass
    return loggers


def _csv_logger(out: Path, resume_from: Path | None):
    """``out/metrics.csv`` via Lightning's CSVLogger; on resume the rows up to the checkpoint's epoch are kept.

    Lightning's CSV writer expects a log folder of its own: finding ``out`` not empty (it holds the configs, and
    the checkpoints on resume) it warns that previous logs will be deleted, and deletes ``metrics.csv``. Only
    ``metrics.csv`` is the logger's here: it is started afresh without a warning, holding on resume the rows up to
    the checkpoint (rows of an interrupted epoch go; they are logged again).
    """
    import csv

    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    from emovid.models.hub import load_checkpoint

    keep: list[dict] = []
    path = out / "metrics.csv"
    if resume_from is not None and path.exists():
        epoch = int(load_checkpoint(resume_from).get("epoch", -1))
        with open(path, newline="") as f:
            keep = [r for r in csv.DictReader(f) if r.get("epoch", "") != "" and int(r["epoch"]) <= epoch]

    class _Writer(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            if os.path.isfile(self.metrics_file_path):
                os.remove(self.metrics_file_path)
            if keep:
                keys = sorted({k for r in keep for k in r})
                with open(self.metrics_file_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=keys)
                    w.writeheader()
                    w.writerows(keep)
                self.metrics_keys = keys

    class _Logger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is None:
                os.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _Writer(log_dir=self.log_dir)
            return self._experiment

    return _Logger(save_dir=str(out), name="", version="")
