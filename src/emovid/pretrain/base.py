"""What BYOL and DINO share: the momentum (EMA) schedule and update, and the Lightning module around a method."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.models.base import pooled
from emovid.pretrain.config import PretrainConfig
from emovid.utils.training import capture_rng, restore_rng, warmup_cosine, warmup_steps, zero_loss


def cosine_momentum(step: int, total: int, base: float, final: float = 1.0) -> float:
    """EMA coefficient at optimiser step ``k = step`` of ``K = total``.

    BYOL (Grill et al., 2020, Sec. 3.2): ``τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2``, from ``τ_base`` at
    ``k = 0`` to 1 at ``k = K``; DINO's teacher momentum follows the same cosine schedule (0.996 → 1).
    """
    k = min(max(step, 0), max(total, 1))
    return final - (final - base) * (math.cos(math.pi * k / max(total, 1)) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``ξ ← τ·ξ + (1 − τ)·θ`` for every parameter (BYOL Eq. 1; DINO's teacher update ``θ_t ← λθ_t + (1−λ)θ_s``).

    Buffers (BatchNorm running statistics) are not averaged: both networks train in train mode, where
    normalisation uses batch statistics.
    """
    for pt, po in zip(target.parameters(), online.parameters(), strict=True):
        pt.mul_(tau).add_(po.detach(), alpha=1 - tau)


class _PretextModule(pl.LightningModule):
    """What BYOL and DINO share: the backbone, AdamW with warm-up + cosine, EMA after each optimiser step."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self._k = 0
        self._total: int | None = None

    def _embed(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return pooled(net, x)  # the pooled embedding [B, D]

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(target, online)`` module pairs averaged after every optimiser step."""
        raise NotImplementedError

    def momentum_base(self) -> float:
        raise NotImplementedError

    def total_steps(self) -> int:
        """``K``: optimiser steps of the whole run (Lightning's estimate from epochs, batches, max_steps)."""
        if self._total is None:
            self._total = max(1, int(self.trainer.estimated_stepping_batches))
        return self._total

    def momentum(self) -> float:
        return cosine_momentum(self._k, self.total_steps(), self.momentum_base())

    def training_step(self, batch, batch_idx):
        if batch is None:  # every sample failed to load: still step, as the other DDP ranks do
            return zero_loss(self)
        self._k = int(self.trainer.global_step)  # optimiser steps completed so far
        return self.pretext_step(batch)

    def pretext_step(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        # The target/teacher follows the online/student weights *after* their update; it is not in the optimiser.
        tau = self.momentum()
        for target, online in self.teacher_pairs():
            ema_update(target, online, tau)

    def _log_common(self, loss: torch.Tensor, emb: torch.Tensor, batch_size: int) -> None:
        # Spread of the ℓ2-normalised embeddings: ~1/sqrt(D) when healthy, 0 when the representation collapses.
        spread = F.normalize(emb.detach().float(), dim=-1).std(0).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        self.log("train/emb_std", spread, on_step=False, on_epoch=True, batch_size=batch_size)
        self.log("train/momentum", self.momentum(), on_step=True, on_epoch=False, batch_size=batch_size)
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=batch_size)

    def trainable_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def configure_optimizers(self):
        cfg = self.cfg
        decay, no_decay = [], []
        for mod in self.trainable_modules():
            for p in mod.parameters():
                if p.requires_grad:
                    (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        total = self.total_steps()
        warm = warmup_steps(self.trainer, cfg.warmup_epochs) if total > 1 else 0  # epochs' worth, also with max_steps

        sched = warmup_cosine(opt, total, warm)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["emovid_rng"] = capture_rng()  # a resumed run continues exactly

    def on_load_checkpoint(self, checkpoint):
        restore_rng(checkpoint.get("emovid_rng"))
