"""The Lightning pieces around a task: its ``LightningModule`` and its ``LightningDataModule``.

* :class:`TaskModule` — around a :class:`~emovid.tasks.base.TaskModel`: asks its :class:`~emovid.tasks.base.Task`
  for the loss of each training batch and, at the end of validation, for metrics over every validation video
  (gathered from all ranks); builds the optimiser and schedule of the config (:mod:`emovid.train.optim`).
* :class:`TaskDataModule` — the task's training and validation sets and their loaders, re-built every epoch so
  that pairs and lists can be re-drawn reproducibly from the shared epoch.

Both are plain classes: subclass one, override a hook, and give the subclass to :func:`emovid.train.train`
(``module_class=`` / ``datamodule_class=``)::

    class LoggedModule(TaskModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            ...
            return loss
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from emovid.config import TrainConfig
from emovid.data.datasets import EpochRef
from emovid.tasks.base import Task, TaskModel
from emovid.utils.training import capture_rng, restore_rng, zero_loss

log = logging.getLogger("emovid.train")


class TaskModule(pl.LightningModule):
    """Loss from the task per batch; metrics from the task over the whole validation set.

    Args:
        task: the task (labels, loss, metrics).
        model: its model (backbone + head).
        cfg: the run's options (frozen backbone, optimiser, schedule).
        cached: the model is fed precomputed embeddings, not clips (the backbone is not trained).

    Attributes:
        stage: ``val`` while fitting; ``test`` while another split is evaluated (then the task's
            :meth:`~emovid.tasks.base.Task.test_metrics` are computed and logged as ``test/...``).
        last_metrics: the metrics of the last validation, unfiltered.
    """

    def __init__(self, task: Task, model: TaskModel, cfg: TrainConfig, cached: bool = False):
        super().__init__()
        self.model = model
        self.task = task
        self.cfg = cfg
        self.cached = cached
        self.stage = "val"
        self._outputs: list[dict[str, torch.Tensor]] = []

    @property
    def backbone_frozen(self) -> bool:
        """The backbone is not trained (``--freeze-backbone``, or embeddings fed instead of clips)."""
        return bool(self.cfg.freeze_backbone or self.cached)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            self.model.feature_extractor.eval()  # frozen: BatchNorm statistics stay as loaded
        return self

    def on_train_epoch_start(self):
        # Lightning 2.x no longer calls .train() when fitting starts; set the modes here, every epoch.
        self.train()

    def training_step(self, batch, batch_idx):
        if batch is None:  # every sample failed to load: still step, as the other DDP ranks do
            return zero_loss(self.model)
        loss = self.task.training_loss(self.model, batch, self.cached)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=_batch_len(batch))
        return loss

    def validation_step(self, batch, batch_idx):
        if batch is None:
            return
        out = self.task.predict(self.model, batch, self.cached)
        self._outputs.append({k: torch.as_tensor(v).detach() for k, v in out.items()})

    def on_validation_epoch_start(self):
        self._outputs = []

    def on_validation_epoch_end(self):
        outputs = _gather(self, self._outputs)
        self._outputs = []
        if not outputs:
            return
        metrics = self.compute_metrics(outputs)
        clean = {f"{self.stage}/{k}": float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        dropped = sorted(k for k, v in metrics.items() if v is not None and not math.isfinite(v))
        if dropped:  # say so: a metric missing from metrics.csv is otherwise indistinguishable from a bug
            log.warning("%s metrics not finite, not logged: %s", self.stage, ", ".join(dropped))
        self.log_dict(clean, prog_bar=False, sync_dist=False)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}

    def compute_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """The task's metrics over every video of the split being evaluated (its test metrics under ``test``)."""
        if self.stage == "test":
            return self.task.test_metrics(outputs)
        return self.task.compute_metrics(outputs)

    def configure_optimizers(self):
        from emovid.train.optim import build_optimizer, build_scheduler

        world = self.trainer.world_size if self._trainer is not None else 1
        opt, lr, min_lr = build_optimizer(self.model, self.cfg, not self.backbone_frozen, world)
        if self.cfg.scheduler == "constant":
            return opt
        sched = build_scheduler(opt, self.cfg, self.trainer, lr, min_lr)
        return {"optimizer": opt, "lr_scheduler": sched}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["emovid_rng"] = capture_rng()  # a resumed run continues exactly

    def on_load_checkpoint(self, checkpoint):
        restore_rng(checkpoint.get("emovid_rng"))


class TaskDataModule(pl.LightningDataModule):
    """The task's training set (re-drawn each epoch from ``epoch_ref``) and validation set, and their loaders.

    Args:
        task: the task building the datasets (:meth:`~emovid.tasks.base.Task.train_dataset` / ``val_dataset``).
        cfg: batch size, workers, seed.
        train_loader / eval_loader: what reads one sample (clip loaders, or embedding loaders).
        epoch_ref: the epoch shared with the :class:`~emovid.engine.callbacks.EpochSetter` callback.
    """

    def __init__(
        self, task: Task, cfg: TrainConfig, train_loader: Callable, eval_loader: Callable, epoch_ref: EpochRef
    ):
        super().__init__()
        self.task, self.cfg = task, cfg
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.epoch_ref = epoch_ref

    @property
    def num_workers(self) -> int:
        # Cached embeddings need no decoding: worker processes would only add start-up time to every epoch.
        return 0 if (self.cfg.cache_features or self.task.uses_embeddings) else self.cfg.num_workers

    def loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        """A loader over ``ds``: shuffled per epoch (reproducibly from the seed and the epoch) when ``shuffle``."""
        from emovid.data.datasets import EpochShuffleSampler, collate_skip_none

        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            sampler=EpochShuffleSampler(len(ds), self.cfg.seed, self.epoch_ref) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=getattr(ds, "collate_fn", collate_skip_none),  # a task's dataset may pad its clips
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self):
        return self.loader(self.task.train_dataset(self.train_loader, self.epoch_ref), shuffle=True)

    def val_dataloader(self):
        return self.loader(self.task.val_dataset(self.eval_loader), shuffle=False)


def _batch_len(batch: dict) -> int:
    for key in ("target", "video", "videos"):
        if key in batch:
            return len(batch[key])
    return 1


def _gather(module, outputs: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    """Concatenate per-batch outputs, gather them from all ranks, drop DistributedSampler padding duplicates."""
    if not outputs:
        return {}
    cat = {k: torch.cat([o[k].reshape(len(o["index"]), *o[k].shape[1:]) for o in outputs]) for k in outputs[0]}
    if module.trainer.world_size > 1:
        cat = {k: module.all_gather(v).flatten(0, 1) for k, v in cat.items()}
    idx = cat["index"].cpu().numpy()
    _, first = np.unique(idx, return_index=True)
    return {k: v.detach().float().cpu().numpy()[first] if k != "index" else idx[first] for k, v in cat.items()}


__all__ = ["TaskDataModule", "TaskModule"]
