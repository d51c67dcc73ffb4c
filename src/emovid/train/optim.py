"""Optimisers, learning-rate schedules and layer-wise LR decay of the training engine.

* :func:`build_optimizer` — AdamW / Adam / SGD (``--optimizer``) over weight-decay and no-decay groups, optionally
  scaled by ``total batch / --lr-reference-batch`` (VideoMAE's ``lr * total_batch / 256``) and split per layer
  with ``--layer-decay``.
* Layer-wise LR decay (BEiT / VideoMAE ``LayerDecayValueAssigner``): a backbone says which of its parameters form
  the stem, which each block, through ``group_matcher()`` (timm's idea)::

      {"stem": r"^videomae\\.embeddings", "blocks": [(r"^videomae\\.encoder\\.layer\\.(\\d+)\\.", None)]}

  ``stem`` is a regex; ``blocks`` a list of ``(regex, index)``: the regex's first group gives the block's index
  (``index=None``) or every match is block ``index``. Blocks are numbered ``1..L`` in that order, the stem is
  layer ``0``, everything else (final norms, the task head) layer ``L + 1``; layer ``i`` learns at
  ``lr * decay ** (L + 1 - i)``.
* :func:`lr_factor` — the per-step factor: linear warm-up, then cosine down to ``min_lr / lr``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn as nn

from emovid.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "cosine_epoch", "constant")


def layer_ids(backbone: nn.Module, names: list[str]) -> tuple[dict[str, int], int]:
    """Layer of each backbone parameter name from its ``group_matcher()``, and the number of blocks ``L``.

    Raises:
        ConfigError: the backbone has no ``group_matcher``.
    """
    matcher_fn = getattr(backbone, "group_matcher", None)
    if matcher_fn is None:
        raise ConfigError(
            f"--layer-decay: backbone {type(backbone).__name__} has no group_matcher() (stem / blocks / head); "
            "train it without --layer-decay, or add a group_matcher to its model class"
        )
    matcher = matcher_fn()
    stem = re.compile(matcher["stem"])
    blocks = [(re.compile(p), idx) for p, idx in matcher["blocks"]]
    keys: dict[str, tuple[int, int]] = {}
    for name in names:
        if stem.match(name):
            continue
        for order, (pattern, idx) in enumerate(blocks):
            m = pattern.match(name)
            if m:
                keys[name] = (order, int(m.group(1)) if idx is None else int(idx))
                break
    ordinal = {k: i + 1 for i, k in enumerate(sorted(set(keys.values())))}
    num_blocks = len(ordinal)
    out = {}
    for name in names:
        if stem.match(name):
            out[name] = 0
        elif name in keys:
            out[name] = ordinal[keys[name]]
        else:
            out[name] = num_blocks + 1
    return out, num_blocks


def _decay_split(name: str, p: torch.Tensor) -> bool:
    # No weight decay on biases, norm weights and scalars such as the retrieval temperature, as in VideoMAE
    # (len(shape) == 1 or .bias) and emovid's param_groups.
    return not (p.ndim < 2 or name.endswith(".bias") or name.endswith("logit_scale"))


def param_groups(model: nn.Module, cfg, lr: float, train_backbone: bool) -> list[dict[str, Any]]:
    """Optimiser groups of a :class:`~emovid.tasks.base.TaskModel`: decay / no decay, the head at ``--head-lr``,
    and with ``--layer-decay`` one pair per layer carrying ``lr_scale``."""
    head_lr = (cfg.head_lr or cfg.lr) * (lr / cfg.lr if cfg.lr else 1.0)
    named: list[tuple[str, str, torch.Tensor]] = []  # (part, name, param)
    if train_backbone:
        named += [("backbone", n, p) for n, p in model.feature_extractor.named_parameters() if p.requires_grad]
    named += [("head", n, p) for n, p in model.head.named_parameters() if p.requires_grad]
    layer_of: dict[str, int] = {}
    num_blocks = 0
    if cfg.layer_decay is not None:
        if not train_backbone:
            raise ConfigError("--layer-decay needs a trained backbone; drop --freeze-backbone / --cache-features")
        if not 0 < cfg.layer_decay <= 1:
            raise ConfigError(f"--layer-decay must be in (0, 1], got {cfg.layer_decay}")
        layer_of, num_blocks = layer_ids(model.feature_extractor, [n for part, n, _ in named if part == "backbone"])
    groups: dict[tuple, dict[str, Any]] = {}
    for part, name, p in named:
        decay = bool(cfg.weight_decay_1d) or _decay_split(name, p)
        if cfg.layer_decay is not None:
            layer = layer_of[name] if part == "backbone" else num_blocks + 1
            scale = cfg.layer_decay ** (num_blocks + 1 - layer)
        else:
            layer, scale = -1, 1.0
        key = (part, layer, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "lr": (head_lr if part == "head" else lr) * scale,
                "lr_scale": scale,
                "layer": layer,
                "name": f"{part}{'' if layer < 0 else f'_layer{layer}'}_{'decay' if decay else 'no_decay'}",
            }
        groups[key]["params"].append(p)
    return list(groups.values())


def scaled_lr(cfg, world_size: int) -> tuple[float, float]:
    """``(lr, min_lr)``, times ``batch * accumulation * devices / --lr-reference-batch`` when that is set."""
    if not cfg.lr_reference_batch:
        return cfg.lr, cfg.min_lr
    total = cfg.batch_size * cfg.accumulate_grad_batches * max(1, world_size)
    f = total / cfg.lr_reference_batch
    return cfg.lr * f, cfg.min_lr * f


def build_optimizer(model: nn.Module, cfg, train_backbone: bool, world_size: int = 1):
    """The optimiser of ``cfg`` over ``model``; returns ``(optimizer, lr, min_lr)`` (after batch scaling)."""
    name = cfg.optimizer.lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown --optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    lr, min_lr = scaled_lr(cfg, world_size)
    groups = param_groups(model, cfg, lr, train_backbone)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen")
    if name == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif name == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.opt_betas), eps=cfg.opt_eps)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.opt_betas), eps=cfg.opt_eps)
    return opt, lr, min_lr


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Per-step LR factor: ``(step + 1) / warmup`` during the warm-up, then a cosine from 1 to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def vaerr_epoch_factor(epoch: int, epochs: int) -> float:
    """VAERR's ``CosineScheduler``: epoch 0 at the full LR; after epoch ``e`` the LR is ``0.5 (1 + cos(pi e / E))``
    of it, so epoch ``e >= 1`` trains at ``0.5 (1 + cos(pi (e - 1) / E))``."""
    if epoch <= 0:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, epochs)))


def build_scheduler(opt, cfg, trainer, lr: float, min_lr: float):
    """Lightning's ``lr_scheduler`` entry for ``cfg.scheduler`` (``None`` for ``constant``)."""
    from emovid.utils.training import warmup_steps

    if cfg.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown --scheduler {cfg.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if cfg.scheduler == "constant":
        return None
    if cfg.scheduler == "cosine_epoch":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: vaerr_epoch_factor(e, cfg.epochs))
        return {"scheduler": sched, "interval": "epoch"}
    total = max(1, int(trainer.estimated_stepping_batches))
    warm = warmup_steps(trainer, cfg.warmup_epochs)
    ratio = min_lr / lr if lr > 0 else 0.0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm, ratio))
    return {"scheduler": sched, "interval": "step"}
