"""BYOL (Grill et al., 2020, "Bootstrap your own latent", NeurIPS): loss, projector/predictor, Lightning module."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.pretrain.base import _PretextModule
from emovid.pretrain.config import PretrainConfig


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss between online predictions and target projections, averaged over the batch.

    Grill et al. (2020), Eq. 2: with ``q̄ = q/‖q‖`` and ``z̄' = z'/‖z'‖``,
    ``L = ‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖)``. The target is a constant (stop-gradient, ``sg``).
    The symmetrised loss of the paper (Eq. 3 ff.) is ``byol_loss(q1, z2') + byol_loss(q2, z1')``.

    Args:
        p: online predictions ``q_θ(z_θ)`` ``[B, d]``.
        z: target projections ``z'_ξ`` ``[B, d]`` (detached here).
    """
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def byol_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector and predictor: ``Linear(in, 4096) → BatchNorm → ReLU → Linear(4096, 256)`` (Sec. 3.3)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
    )


class BYOLModule(_PretextModule):
    """BYOL (Grill et al., 2020): an online network learns to predict a slowly moving target network's projection.

    * online: encoder ``f_θ`` (the backbone's pooled embedding ``[B, D]``), projector ``g_θ`` and predictor
      ``q_θ`` (both :func:`byol_mlp`);
    * target: encoder ``f_ξ`` and projector ``g_ξ``, an exponential moving average of the online weights,
      ``ξ ← τξ + (1 − τ)θ`` after each optimiser step (:func:`ema_update`) with ``τ`` on the cosine schedule
      ``τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2`` (:func:`cosine_momentum`); it gets no gradients;
    * loss for two views ``v, v'`` (two temporal + spatial crops of one video):
      ``L = (2 − 2·cos(q_θ(z_θ), sg(z'_ξ))) + (2 − 2·cos(q_θ(z'_θ), sg(z_ξ)))`` (:func:`byol_loss`, symmetrised).
    """

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig):
        super().__init__(backbone, cfg)
        d = int(backbone.num_features)
        self.projector = byol_mlp(d, cfg.byol_hidden_dim, cfg.byol_proj_dim)
        self.predictor = byol_mlp(cfg.byol_proj_dim, cfg.byol_hidden_dim, cfg.byol_proj_dim)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def teacher_pairs(self):
        return [(self.target_backbone, self.backbone), (self.target_projector, self.projector)]

    def trainable_modules(self):
        return [self.backbone, self.projector, self.predictor]

    def momentum_base(self) -> float:
        return self.cfg.byol_tau

    def pretext_step(self, batch: dict) -> torch.Tensor:
        v1, v2 = batch["views"][:2]
        b = v1.shape[0]
        x = torch.cat([v1, v2])  # one pass: BatchNorm sees both views, as one batch of 2B clips
        emb = self._embed(self.backbone, x)
        p1, p2 = self.predictor(self.projector(emb)).split(b)
        with torch.no_grad():
            z1, z2 = self.target_projector(self._embed(self.target_backbone, x)).split(b)
        loss = byol_loss(p1, z2) + byol_loss(p2, z1)
        self._log_common(loss, emb, b)
        return loss
