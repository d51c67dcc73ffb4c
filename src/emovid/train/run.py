"""The run: :func:`train` puts task, model, loaders, callbacks and loggers on one Lightning ``Trainer``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emovid.config import TrainConfig
from emovid.data.datasets import EpochRef
from emovid.engine.callbacks import EpochSetter
from emovid.engine.checkpoint import (
    best_checkpoint,
    check_run_folder,
    last_checkpoint,
    resume_epoch,
    safe_checkpoint_io,
)
from emovid.engine.module import TaskDataModule, TaskModule
from emovid.tasks.base import Task
from emovid.train.checkpoint import MODEL_FILE, TRAIN_CONFIG, ExportBest
from emovid.train.console import make_loggers, make_progress_bar, quiet_lightning
from emovid.train.module import _lightning
from emovid.train.prepare import _loaders, _note, preflight, prepare, split_note
from emovid.utils.io import write_json


def train(
    cfg: TrainConfig,
    callbacks: list | None = None,
    trainer_kwargs: dict | None = None,
    *,
    module_class: type[TaskModule] = TaskModule,
    datamodule_class: type[TaskDataModule] = TaskDataModule,
) -> dict[str, Any]:
    """Train ``cfg.task`` and write the checkpoint directory ``cfg.output_dir``.

    Args:
        callbacks: extra Lightning callbacks.
        trainer_kwargs: extra ``Trainer`` arguments (override the config's).
        module_class / datamodule_class: subclasses of :class:`~emovid.engine.module.TaskModule` /
            :class:`~emovid.engine.module.TaskDataModule` to run instead (built with the same arguments).

    Returns:
        A summary: best metric, metrics of the best epoch, paths, skipped videos.
    """
    pl = _lightning()
    from lightning.pytorch.callbacks import EarlyStopping

    out = Path(cfg.output_dir)
    last = check_run_folder(out, cfg.resume)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task, model = prepare(cfg)
    failures = preflight(task, cfg, out)
    _note(split_note(task, failures))
    cached = bool(cfg.cache_features) or task.uses_embeddings
    if cfg.freeze_backbone or cached:
        model.feature_extractor.requires_grad_(False)
    train_loader, eval_loader = _loaders(cfg, task, model)
    if cfg.cache_features and not task.uses_embeddings:
        from emovid.features import cache_features

        train_loader, eval_loader = cache_features(task, model, eval_loader, out / "feature_cache", cfg)
    cfg.save(out / TRAIN_CONFIG)
    module = module_class(task, model, cfg, cached)
    # Lightning 2.x keeps the train/eval modes it finds, and parts loaded from other runs (fusion heads) come in eval
    # mode; set the module's own modes before fit checks them. A frozen backbone stays in eval mode on purpose.
    module.train()
    if cfg.freeze_backbone or cached:
        import warnings

        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    epoch_ref = EpochRef(resume_epoch(last) if cfg.resume else 0)
    data = datamodule_class(task, cfg, train_loader, eval_loader, epoch_ref)
    monitor, mode = monitor_of(task, cfg)
    best_ckpt = best_checkpoint(out, monitor, mode)
    last_ckpt = last_checkpoint(out)
    export = ExportBest(task, cfg, out, monitor, mode)
    cbs = [EpochSetter(epoch_ref), best_ckpt, last_ckpt, export, *(callbacks or [])]
    if cfg.early_stopping_patience:
        cbs.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping_patience))
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
    test_records = task.test_records
    if test_records and trainer.is_global_zero:
        if cfg.test_views:
            summary["test_metrics"] = evaluate_split_views(task, module, test_records, cfg)
        else:
            summary["test_metrics"] = evaluate_split(task, module, test_records, eval_loader, cfg, trainer)
        write_json(out / "test_metrics.json", summary["test_metrics"])
    return summary


def monitor_of(task: Task, cfg: TrainConfig) -> tuple[str, str]:
    """The metric that picks the best checkpoint and whether higher is better (``--monitor`` or the task's)."""
    if not cfg.monitor:
        return task.monitor, task.mode
    name = cfg.monitor if "/" in cfg.monitor else f"val/{cfg.monitor}"
    lower_is_better = any(w in name.rsplit("/", 1)[-1] for w in ("loss", "mse", "mae", "error"))
    return name, "min" if lower_is_better else "max"


def evaluate_split_views(task: Task, module, records: list, cfg: TrainConfig) -> dict[str, float]:
    """Metrics of the best weights on ``records`` with ``--test-views`` views averaged (:mod:`emovid.train.views`)."""
    import torch
    from safetensors.torch import load_file

    from emovid.train.views import evaluate_views

    best = Path(cfg.output_dir) / MODEL_FILE
    if best.exists():
        module.model.load_state_dict(load_file(str(best)))
    use_cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    device = torch.device("cuda" if use_cuda else "cpu")
    model = module.model.to(device)
    return evaluate_views(task, model, records, cfg, device)


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
