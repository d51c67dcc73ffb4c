"""The pretraining run (:func:`pretrain`, behind ``emovid pretrain``) and the checkpoint directory it writes::

    OUTPUT_DIR/
      model.safetensors       the pretrained backbone (online encoder / student) under the registry model's own
                              keys: create_model(NAME, pretrained=OUTPUT_DIR/model.safetensors) loads it strictly
      model_config.yaml       model name, features, clip geometry it was pretrained on, method, epochs done
      pretrain_config.yaml    every option of the run (:class:`PretrainConfig`)
      checkpoints/last.ckpt   Lightning state for --resume (online + target networks, DINO centre, optimiser)
      metrics.csv             per-step and per-epoch loss, momentum, learning rate, embedding spread
      failures.jsonl          videos skipped because they could not be read

Downstream (VAERR's ``--model-path ckpt --allow-size-mismatch``)::

    emovid train valence_arousal --model resnet18_3dstem_gru --pretrained OUTPUT_DIR/model.safetensors \\
        --allow-size-mismatch ...

The pretext checkpoint has no GRU, so the downstream model loads it non-strictly (its GRU and head start fresh).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.nn as nn
import yaml
from lightning.pytorch.callbacks import Callback

from emovid.engine.callbacks import EpochSetter
from emovid.engine.checkpoint import check_run_folder, last_checkpoint, resume_epoch
from emovid.errors import ConfigError, EmovidError, ModelError
from emovid.pretrain.byol import BYOLModule
from emovid.pretrain.clips import Geometry, PretextDataModule, geometry
from emovid.pretrain.config import MODEL_CONFIG, MODEL_FILE, PRETRAIN_CONFIG, PretrainConfig
from emovid.pretrain.dino import DINOModule
from emovid.utils.io import atomic_open, atomic_path, write_json

log = logging.getLogger(__name__)


def save_backbone(
    backbone: nn.Module, cfg: PretrainConfig, geo: Geometry, out: str | os.PathLike, progress: dict
) -> None:
    """Write ``model.safetensors`` (the backbone's own state dict) and ``model_config.yaml`` atomically."""
    from safetensors.torch import save_file

    from emovid import __version__

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    with atomic_path(out / MODEL_FILE) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "pretext": cfg.method})
    name = getattr(backbone, "model_name", cfg.model)
    model_cfg = {
        "model": name,
        "num_features": int(backbone.num_features),
        "pretext": {"method": cfg.method, **progress},
        "clip": geo.to_dict(),
        "pretrained_cfg": backbone.pretrained_cfg.to_dict() if hasattr(backbone, "pretrained_cfg") else None,
        "usage": f"create_model({name!r}, pretrained='{out / MODEL_FILE}'); downstream models with more parts "
        "(e.g. a GRU) load it with allow_size_mismatch=True, strict=False (--allow-size-mismatch)",
        "emovid_version": __version__,
    }
    with atomic_open(out / MODEL_CONFIG) as f:
        yaml.safe_dump(model_cfg, f, sort_keys=False)


class ExportBackbone(Callback):
    """After every epoch (rank 0) put the current backbone in the checkpoint directory."""

    def __init__(self, cfg: PretrainConfig, geo: Geometry, out: Path):
        self.cfg, self.geo, self.out = cfg, geo, out

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            progress = {"epochs_done": trainer.current_epoch + 1, "global_step": int(trainer.global_step)}
            save_backbone(pl_module.backbone, self.cfg, self.geo, self.out, progress)


def build_backbone(cfg: PretrainConfig) -> nn.Module:
    """The registered model to pretrain, as a feature extractor (``num_classes=0``)."""
    from emovid.models import create_model

    backbone = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=0)
    for attr in ("forward_features", "num_features", "pretrained_cfg"):
        if not hasattr(backbone, attr):
            raise ModelError(f"model {cfg.model!r} has no {attr}; pretrain a registered video backbone")
    return backbone


def find_videos(cfg: PretrainConfig, out: Path) -> tuple[list[Path], list[dict]]:
    """Every video file below ``cfg.videos`` that opens; unreadable ones are listed in ``failures.jsonl``."""
    from emovid.data.datasets import VideoRef, check_videos
    from emovid.extract import list_videos

    if not cfg.videos:
        raise ConfigError("give the unlabelled videos with --videos DIR")
    root = Path(cfg.videos)
    rels = list_videos(root)
    refs = [VideoRef(r, root / r) for r in rels]
    kept, failures = check_videos(refs, workers=max(2, cfg.num_workers))
    if failures:
        with atomic_open(out / "failures.jsonl") as f:
            for rec in failures:
                f.write(json.dumps(rec) + "\n")
        log.warning("skipping %d unreadable videos (listed in %s)", len(failures), out / "failures.jsonl")
    if len(kept) < 2:
        raise EmovidError(f"{root}: needs at least 2 readable videos, found {len(kept)} (see {out / 'failures.jsonl'})")
    return [r.video_path for r in kept], failures


def pretrain(cfg: PretrainConfig, callbacks: list | None = None, trainer_kwargs: dict | None = None) -> dict[str, Any]:
    """Pretrain ``cfg.model`` with ``cfg.method`` on the videos below ``cfg.videos``; write ``cfg.output_dir``.

    Args:
        callbacks: extra Lightning callbacks.
        trainer_kwargs: extra ``Trainer`` arguments (override the config's).

    Returns:
        A summary: paths, videos used and skipped, epochs and steps run, the last epoch's loss.

    Raises:
        ConfigError: bad options, nothing to resume, or an output folder that already holds a run.
        InputNotFoundError: the videos folder does not exist.
        ModelError: an unknown model.
    """
    from emovid.train import make_loggers, make_trainer

    out = Path(cfg.output_dir)
    last = check_run_folder(out, cfg.resume)
    if not cfg.videos:
        raise ConfigError("give the unlabelled videos with --videos DIR")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build_backbone(cfg)  # before touching the output folder: a bad model name leaves nothing behind
    geo = geometry(cfg, backbone)
    out.mkdir(parents=True, exist_ok=True)
    videos, failures = find_videos(cfg, out)
    module = (BYOLModule if cfg.method == "byol" else DINOModule)(backbone, cfg)
    from emovid.data.datasets import EpochRef

    epoch_ref = EpochRef(resume_epoch(last) if cfg.resume else 0)
    data = PretextDataModule(videos, cfg, geo, epoch_ref)
    cfg.save(out / PRETRAIN_CONFIG)
    ckpt = last_checkpoint(out, save_on_train_epoch_end=True)  # rewritten after every epoch
    cbs = [EpochSetter(epoch_ref), ckpt, ExportBackbone(cfg, geo, out), *(callbacks or [])]
    loggers = make_loggers(out, last if cfg.resume else None)
    trainer = make_trainer(cfg, out, cbs, loggers, trainer_kwargs, sync_batchnorm=cfg.sync_batchnorm)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if cfg.resume else None)
    progress = {"epochs_done": int(trainer.current_epoch), "global_step": int(trainer.global_step)}
    if trainer.is_global_zero:
        save_backbone(module.backbone, cfg, geo, out, progress)
    loss = trainer.callback_metrics.get("train/loss_epoch")
    summary = {
        "output_dir": str(out),
        "weights": str(out / MODEL_FILE),
        "method": cfg.method,
        "model": cfg.model,
        "videos": len(videos),
        "skipped_videos": len(failures),
        "clip": geo.to_dict(),
        **progress,
        "loss": float(loss) if loss is not None else None,
    }
    if trainer.is_global_zero:
        write_json(out / "pretrain_summary.json", summary)
    return summary
