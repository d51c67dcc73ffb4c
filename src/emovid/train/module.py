"""The Lightning pieces around a task: its ``LightningModule`` (loss, metrics, optimizers) and its data module.

* :func:`make_module` — ``TaskModule``, a ``LightningModule`` around a :class:`~emovid.tasks.base.TaskModel` that
  asks its task for the loss of each batch and, at the end of validation, for metrics over all validation videos.
* :func:`make_datamodule` — datasets and loaders (re-built each epoch so pairs can be re-drawn reproducibly).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from emovid.config import TrainConfig
from emovid.data.datasets import EpochRef
from emovid.errors import EmovidError
from emovid.tasks.base import Task, TaskModel
from emovid.utils.training import capture_rng, restore_rng, zero_loss

log = logging.getLogger("emovid.train")


def _lightning():
    try:
        import lightning.pytorch as pl
    except ImportError as e:  # pragma: no cover - a core dependency
        raise EmovidError("training needs Lightning: pip install lightning") from e
    return pl


def make_module(task: Task, model: TaskModel, cfg: TrainConfig, cached: bool):
    pl = _lightning()

    class TaskModule(pl.LightningModule):
        """Loss from the task per batch; metrics from the task over the whole validation set."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.task = task
            self.cached = cached
            self.stage = "val"
            self._outputs: list[dict[str, torch.Tensor]] = []

        def train(self, mode: bool = True):
            super().train(mode)
            if cfg.freeze_backbone or cached:
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
            if self.stage == "test":
                metrics = getattr(self.task, "test_metrics", self.task.compute_metrics)(outputs)
            else:
                metrics = self.task.compute_metrics(outputs)
            clean = {f"{self.stage}/{k}": float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
            dropped = sorted(k for k, v in metrics.items() if v is not None and not math.isfinite(v))
            if dropped:  # say so: a metric missing from metrics.csv is otherwise indistinguishable from a bug
                log.warning("%s metrics not finite, not logged: %s", self.stage, ", ".join(dropped))
            self.log_dict(clean, prog_bar=False, sync_dist=False)
            self.last_metrics = {k: float(v) for k, v in metrics.items()}

        def configure_optimizers(self):
            from emovid.train.optim import build_optimizer, build_scheduler

            train_backbone = not (cfg.freeze_backbone or cached)
            world = self.trainer.world_size if self._trainer is not None else 1
            opt, lr, min_lr = build_optimizer(self.model, cfg, train_backbone, world)
            if cfg.scheduler == "constant":
                return opt
            sched = build_scheduler(opt, cfg, self.trainer, lr, min_lr)
            return {"optimizer": opt, "lr_scheduler": sched}

        def on_save_checkpoint(self, checkpoint):
            checkpoint["emovid_rng"] = capture_rng()  # a resumed run continues exactly

        def on_load_checkpoint(self, checkpoint):
            restore_rng(checkpoint.get("emovid_rng"))

    return TaskModule()


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


def make_datamodule(task: Task, cfg: TrainConfig, train_loader, eval_loader, epoch_ref):
    pl = _lightning()
    from torch.utils.data import DataLoader

    from emovid.data.datasets import EpochShuffleSampler, collate_skip_none

    # Cached embeddings need no decoding: worker processes would only add start-up time to every epoch.
    workers = 0 if (cfg.cache_features or task.uses_embeddings) else cfg.num_workers

    def loader(ds, shuffle: bool):
        return DataLoader(
            ds,
            batch_size=cfg.batch_size,
            sampler=EpochShuffleSampler(len(ds), cfg.seed, epoch_ref) if shuffle else None,
            num_workers=workers,
            collate_fn=getattr(ds, "collate_fn", collate_skip_none),  # a task's dataset may pad its clips
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    class TaskDataModule(pl.LightningDataModule):
        def train_dataloader(self):
            return loader(task.train_dataset(train_loader, epoch_ref), shuffle=True)

        def val_dataloader(self):
            return loader(task.val_dataset(eval_loader), shuffle=False)

    return TaskDataModule()


class _EpochSetter(Callback):
    """Advance the training set's :class:`EpochRef` before each epoch's loader (and its workers) starts."""

    def __init__(self, ref: EpochRef):
        self.ref = ref

    def on_train_epoch_start(self, trainer, pl_module):
        self.ref.epoch = trainer.current_epoch
