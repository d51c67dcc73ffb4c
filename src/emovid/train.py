"""The training engine: any task, any registered backbone, one Lightning ``Trainer``.

Lightning does the loop, devices (CPU, one or many GPUs, many nodes; DDP; SLURM is detected from the
environment), mixed precision, gradient accumulation and clipping, checkpointing, resume, early stopping,
progress and logging. This module only assembles it:

* :class:`TaskModule` — a ``LightningModule`` around a :class:`~emovid.tasks.base.TaskModel` that asks its task
  for the loss of each batch and, at the end of validation, for metrics over all validation videos.
* :class:`TaskDataModule` — datasets and loaders (re-built each epoch so pairs can be re-drawn reproducibly).
* :func:`train` — the whole run into a checkpoint directory::

      OUTPUT_DIR/
        model.safetensors      best weights (TaskModel state dict)
        model_config.yaml      what to build to load them (model name, task, head options)
        train_config.yaml      every option of the run
        checkpoints/last.ckpt  Lightning state for --resume (best.ckpt: the best epoch's)
        metrics.csv            per-epoch metrics (CSVLogger)
        best_model.pth         intensity task: the IntensityScorer state dict (seed 000 compatibility)
        failures.jsonl         videos skipped because they could not be read
        test_metrics.json      the best model on the dataset's test split, when it has one
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from emovid.config import TrainConfig
from emovid.data.datasets import EpochRef
from emovid.errors import ConfigError, EmovidError, ModelError
from emovid.tasks.base import Task, TaskModel, get_task
from emovid.utils.io import atomic_open, atomic_path, write_json
from emovid.utils.training import capture_rng, param_groups, restore_rng, warmup_cosine, warmup_steps, zero_loss

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.yaml"
TRAIN_CONFIG = "train_config.yaml"


# ---- model construction and checkpoint directories ---------------------------------------------------------------


def build_task_model(cfg: TrainConfig, task: Task, pretrained: bool = True) -> TaskModel:
    from emovid.models import create_model

    if task.uses_embeddings:  # heads over precomputed embeddings (seed 001)
        return task.build_model(task.make_backbone())
    backbone = create_model(
        cfg.model or task.default_model,
        pretrained=cfg.pretrained if pretrained else None,
        num_classes=0,
        allow_size_mismatch=cfg.allow_size_mismatch,
        strict=not cfg.allow_size_mismatch,
        **cfg.model_args,
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


# ---- Lightning pieces ----------------------------------------------------------------------------------------------


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
            head_lr = cfg.head_lr or cfg.lr
            # No weight decay on biases, norm weights and the retrieval temperature (see param_groups).
            groups = param_groups(self.model.head.named_parameters(), cfg.weight_decay, lr=head_lr)
            if not (cfg.freeze_backbone or cached):
                bb = param_groups(self.model.feature_extractor.named_parameters(), cfg.weight_decay, lr=cfg.lr)
                groups = bb + groups
            opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
            if cfg.scheduler == "constant":
                return opt
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = warmup_cosine(opt, total, warmup_steps(self.trainer, cfg.warmup_epochs))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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


# ---- the run -----------------------------------------------------------------------------------------------------


def _loaders(cfg: TrainConfig, task: Task, model: TaskModel):
    if task.uses_embeddings:
        return task.make_loaders(model)
    from emovid.data.datasets import ClipLoader
    from emovid.models import create_transform
    from emovid.video.sampling import parse_sampler

    pc = model.feature_extractor.pretrained_cfg
    n, stride = pc.num_frames, pc.frame_stride
    clip = str(n)
    if getattr(task, "clip_frames", None) is not None and cfg.clip_length:
        clip = f"{cfg.clip_length:g}s"  # --clip-length seconds: frames from each video's own frame rate
    eval_s = parse_sampler(cfg.eval_sampler or f"center:{clip}x{stride}")
    # --no-augment (and the feature cache) train on the deterministic evaluation clip of each video.
    default_train = f"random:{clip}x{stride}" if cfg.augment and not cfg.cache_features else str(eval_s)
    train_s = parse_sampler(cfg.train_sampler or default_train)
    crop = min(pc.input_size)
    short_eval = pc.short_side or crop
    short_train = pc.short_side or int(round(crop * 8 / 7))
    augment = cfg.augment and not cfg.cache_features
    train_tf = create_transform(pc, train=augment)
    eval_tf = create_transform(pc, train=False)
    train_loader = ClipLoader(train_s, train_tf, short_train if augment else short_eval, in_chans=pc.in_chans)
    eval_loader = ClipLoader(eval_s, eval_tf, short_eval, in_chans=pc.in_chans)
    return train_loader, eval_loader


def prepare(cfg: TrainConfig) -> tuple[Task, TaskModel]:
    """Read labels, check videos, build the model (no training)."""
    task = get_task(cfg.task)(cfg)
    task.load()
    if not task.train_records:
        raise ConfigError(f"{cfg.data}: the training split is empty")
    if not task.val_records:
        raise ConfigError(f"{cfg.data}: the validation split is empty (raise --val-fraction or add videos)")
    model = build_task_model(cfg, task)
    return task, model


def preflight(task: Task, cfg: TrainConfig, out: Path) -> list[dict]:
    from emovid.data.datasets import check_videos

    recs = task.all_records() + list(getattr(task, "test_records", []))
    if task.uses_embeddings:
        failures = task.check_inputs(recs)
        if failures and cfg.strict:
            raise EmovidError(f"{failures[0]['video']}: {failures[0]['error']}")
    else:
        _, failures = check_videos(recs, strict=cfg.strict, workers=max(2, cfg.num_workers))
    if failures and task.uses_embeddings:
        with atomic_open(out / "failures.jsonl") as f:
            for rec in failures:
                f.write(json.dumps(rec) + "\n")
        task.drop_videos(task.bad_keys(failures))
        log.warning("skipping %d videos without embeddings (listed in %s)", len(failures), out / "failures.jsonl")
        if not task.train_records or not task.val_records:
            raise EmovidError(f"no usable videos left (see {out / 'failures.jsonl'})")
    elif failures:
        with atomic_open(out / "failures.jsonl") as f:
            for rec in failures:
                f.write(json.dumps(rec) + "\n")
        bad = {f["video"] for f in failures}
        task.drop_videos(bad)
        if hasattr(task, "test_records"):
            task.test_records = [r for r in task.test_records if str(r.video_path) not in bad]
        log.warning("skipping %d unreadable videos (listed in %s)", len(failures), out / "failures.jsonl")
        if not task.train_records or not task.val_records:
            first = failures[0]
            raise EmovidError(
                f"no usable videos left after skipping {len(failures)} unreadable ones, e.g. {first['video']}: "
                f"{first['error']} (all listed in {out / 'failures.jsonl'}); check --video-root"
            )
    return failures


def make_trainer(cfg, out: Path, callbacks: list, loggers, overrides: dict | None = None, **extra):
    """The Lightning ``Trainer`` of a training or pretraining config (shared fields: epochs/steps, devices, nodes,
    strategy, precision, accumulation, clipping, logging); ``extra`` and then ``overrides`` take precedence.

    Its checkpoint reads (``fit(ckpt_path=...)`` on ``--resume``) go through :func:`emovid.models.hub.load_checkpoint`,
    so a ``.ckpt`` runs no code unless trusted; its console shows the progress bar and nothing of Lightning's chatter.
    """
    pl = _lightning()
    callbacks = list(callbacks)
    quiet_lightning(callbacks)
    if cfg.progress_bar and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        callbacks.append(make_progress_bar())
    kwargs: dict[str, Any] = dict(
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        accelerator=cfg.accelerator,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.gradient_clip_val,
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.progress_bar,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=str(out),
        plugins=[safe_checkpoint_io()],
        **extra,
    )
    if cfg.limit_train_batches is not None:
        kwargs["limit_train_batches"] = cfg.limit_train_batches
    kwargs.update(overrides or {})
    return pl.Trainer(**kwargs)


def safe_checkpoint_io():
    """Lightning's checkpoint reader/writer, reading through :func:`~emovid.models.hub.load_checkpoint`.

    Lightning's own ``torch.load`` follows torch's ``weights_only`` default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    turns off; ours is safe unless the user trusts checkpoints (``--trust-checkpoint``).
    """
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from emovid.models.hub import load_checkpoint

    class SafeCheckpointIO(TorchCheckpointIO):
        def load_checkpoint(self, path, map_location=None, weights_only=None):
            # weights_only from Lightning is ignored: what may be unpickled is decided by trust alone
            return load_checkpoint(path, map_location=map_location or "cpu")

    return SafeCheckpointIO()


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
    r"number of stepping batches|`Trainer\.fit` stopped: `max_(epochs|steps)=",
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
    for logger in loggers:
        if _NOISE_FILTER not in logger.filters:
            logger.addFilter(_NOISE_FILTER)
    for message, category, module in _LIGHTNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def train(cfg: TrainConfig, callbacks: list | None = None, trainer_kwargs: dict | None = None) -> dict[str, Any]:
    """Train ``cfg.task`` and write the checkpoint directory ``cfg.output_dir``.

    Args:
        callbacks: extra Lightning callbacks.
        trainer_kwargs: extra ``Trainer`` arguments (override the config's).

    Returns:
        A summary: best metric, metrics of the best epoch, paths, skipped videos.
    """
    pl = _lightning()
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    out = Path(cfg.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if cfg.resume and not last.exists():
        raise ConfigError(f"{out}: nothing to resume (no checkpoints/last.ckpt); drop --resume to start a new run")
    if not cfg.resume and last.exists():
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or choose another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task, model = prepare(cfg)
    failures = preflight(task, cfg, out)
    cached = bool(cfg.cache_features) or task.uses_embeddings
    if cfg.freeze_backbone or cached:
        model.feature_extractor.requires_grad_(False)
    train_loader, eval_loader = _loaders(cfg, task, model)
    if cfg.cache_features and not task.uses_embeddings:
        from emovid.features import cache_features

        train_loader, eval_loader = cache_features(task, model, eval_loader, out / "feature_cache", cfg)
    cfg.save(out / TRAIN_CONFIG)
    module = make_module(task, model, cfg, cached)
    # Lightning 2.x keeps the train/eval modes it finds, and parts loaded from other runs (fusion heads) come in eval
    # mode; set the module's own modes before fit checks them. A frozen backbone stays in eval mode on purpose.
    module.train()
    if cfg.freeze_backbone or cached:
        import warnings

        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    epoch_ref = EpochRef(_resume_epoch(last) if cfg.resume else 0)
    data = make_datamodule(task, cfg, train_loader, eval_loader, epoch_ref)
    monitor = task.monitor
    best_ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=task.mode, save_top_k=1
    )
    # Lightning's save_last only refreshes last.ckpt when a top-k file is written; resume needs every epoch.
    last_ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1)
    export = ExportBest(task, cfg, out, monitor)
    cbs = [_EpochSetter(epoch_ref), best_ckpt, last_ckpt, export, *(callbacks or [])]
    if cfg.early_stopping_patience:
        cbs.append(EarlyStopping(monitor=monitor, mode=task.mode, patience=cfg.early_stopping_patience))
    loggers = make_loggers(out, last if cfg.resume else None)
    trainer = make_trainer(cfg, out, cbs, loggers, trainer_kwargs)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if cfg.resume else None)
    summary: dict[str, Any] = {
        "output_dir": str(out),
        "task": cfg.task,
        "monitor": monitor,
        "best": export.best,
        "best_metrics": export.best_metrics,
        "epochs_run": trainer.current_epoch,
        "skipped_videos": len(failures),
    }
    test_records = getattr(task, "test_records", None)
    if test_records and trainer.is_global_zero:
        summary["test_metrics"] = evaluate_split(task, module, test_records, eval_loader, cfg, trainer)
        write_json(out / "test_metrics.json", summary["test_metrics"])
    return summary


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


def _resume_epoch(ckpt: Path) -> int:
    """The epoch a resumed run starts in (loaders may be iterated before Lightning's epoch hooks run)."""
    from emovid.models.hub import load_checkpoint

    state = load_checkpoint(ckpt)
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(state.get("epoch", -1)) + 1


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


def parse_devices(devices: str | int):
    """Lightning's ``devices``: a count given as a string becomes an int; ``auto`` and lists stay as they are."""
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return devices


def evaluate_split(task: Task, module, records: list, loader, cfg: TrainConfig, trainer) -> dict[str, float]:
    """Metrics of the best weights on another split (e.g. the dataset's test labels)."""
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader

    from emovid.data.datasets import ClipDataset, collate_skip_none

    best = Path(cfg.output_dir) / MODEL_FILE
    if best.exists():
        module.model.load_state_dict(load_file(str(best)))
    ds = ClipDataset(records, loader, task.targets, seed=cfg.seed)
    dl = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate_skip_none)
    pl = _lightning()
    tester = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module.stage = "test"
    saved = task.val_records
    task.val_records = records
    try:
        tester.validate(module, dataloaders=dl, verbose=False)
    finally:
        task.val_records = saved
        module.stage = "val"
    return getattr(module, "last_metrics", {})


class _EpochSetter(Callback):
    """Advance the training set's :class:`EpochRef` before each epoch's loader (and its workers) starts."""

    def __init__(self, ref: EpochRef):
        self.ref = ref

    def on_train_epoch_start(self, trainer, pl_module):
        self.ref.epoch = trainer.current_epoch


class ExportBest(Callback):
    """Write the checkpoint directory's model files whenever the monitored metric improves (rank 0)."""

    def __init__(self, task: Task, cfg: TrainConfig, out: Path, monitor: str):
        self.task, self.cfg, self.out, self.monitor = task, cfg, out, monitor
        self.best: float | None = None
        self.best_metrics: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or getattr(pl_module, "stage", "val") != "val":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.task.mode == "max" else value < self.best)
        if not better:
            return
        self.best = value
        self.best_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.best_metrics["epoch"] = trainer.current_epoch
        if trainer.is_global_zero:
            save_model_dir(pl_module.model, self.cfg, self.out, self.best_metrics)
            if self.cfg.task == "intensity":  # seed 000: best_model.pth holds the IntensityScorer state dict
                with atomic_path(self.out / "best_model.pth") as tmp:
                    torch.save(pl_module.model.state_dict(), tmp)

    def state_dict(self):
        return {"best": self.best, "best_metrics": self.best_metrics}

    def load_state_dict(self, state):
        self.best = state.get("best")
        self.best_metrics = state.get("best_metrics", {})
