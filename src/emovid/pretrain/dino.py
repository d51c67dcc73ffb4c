"""DINO (Caron et al., 2021, "Emerging properties in self-supervised vision transformers", ICCV).

The loss, centre update and teacher temperature schedule, the projection head and the Lightning module.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.pretrain.base import _PretextModule
from emovid.pretrain.config import PretrainConfig


def dino_loss(
    student_out: Sequence[torch.Tensor],
    teacher_out: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """DINO's cross-entropy between centred, sharpened teacher and student distributions over K prototypes.

    Caron et al. (2021), Eq. 1-3: ``P_s(x) = softmax(g_θs(x) / τ_s)``,
    ``P_t(x) = softmax((g_θt(x) − c) / τ_t)`` (centering by ``c``, sharpening by a low ``τ_t``), and
    ``min_θs Σ_{x ∈ {x1g, x2g}} Σ_{x' ∈ V, x' ≠ x} H(P_t(x), P_s(x'))`` with ``H(a, b) = −Σ a log b``.
    The teacher sees the global crops only; the student all crops ``V`` (globals first, then locals). As in
    the reference code the sum is averaged over the batch and over the number of (teacher, student) pairs.

    Args:
        student_out: logits ``[B, K]`` per crop (the two globals first).
        teacher_out: logits ``[B, K]`` per global crop.
        center: ``c`` ``[K]`` (or ``[1, K]``).
    """
    log_ps = [F.log_softmax(s / student_temp, dim=-1) for s in student_out]
    pt = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher_out]
    total, pairs = 0.0, 0
    for iq, q in enumerate(pt):
        for v, lp in enumerate(log_ps):
            if v == iq:  # the same view seen by both networks
                continue
            total = total + torch.sum(-q * lp, dim=-1).mean()
            pairs += 1
    return total / max(pairs, 1)


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float) -> torch.Tensor:
    """DINO's centre update ``c ← m·c + (1 − m)·(1/B) Σ_i g_θt(x_i)`` (Caron et al., 2021, Eq. 4).

    ``teacher_out`` holds every global crop's teacher logits ``[N, K]``; under DDP the batch mean is taken over
    all ranks (sum all-reduced, divided by the global count), so every rank keeps the same centre.
    """
    total = teacher_out.sum(dim=0, keepdim=True)
    count = torch.tensor(float(teacher_out.shape[0]), device=teacher_out.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    batch_center = total / count
    return center * momentum + batch_center.reshape(center.shape) * (1 - momentum)


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature: linear warm-up from ``warmup_temp`` to ``temp`` over ``warmup_epochs``, then flat.

    Caron et al. (2021), Sec. 3.1/Appendix: τ_t from 0.04 to 0.07 during the first 30 epochs (the code's
    defaults are 0.04 → 0.04); a high τ_t early makes training unstable. As the reference code's
    ``np.linspace(warmup_temp, temp, warmup_epochs)[epoch]``: epoch 0 has ``warmup_temp`` and the last warm-up
    epoch (``warmup_epochs - 1``) already reaches ``temp``.
    """
    if warmup_epochs > 1 and epoch < warmup_epochs:
        return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)
    if warmup_epochs == 1 and epoch == 0:  # linspace of one point: the warm-up value only
        return warmup_temp
    return temp


class DINOHead(nn.Module):
    """DINO projection head: 3-layer MLP (GELU) → ℓ2-normalised bottleneck → weight-normalised layer to K prototypes.

    Caron et al. (2021), Sec. 3.1/Appendix: hidden 2048, bottleneck 256, ``K`` outputs from a weight-normalised
    linear layer without bias whose norm ``g`` is fixed to 1 (``norm_last_layer``), which stabilises training.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, norm_last_layer: bool = True
    ):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return self.last_layer(x)


class DINOModule(_PretextModule):
    """DINO (Caron et al., 2021): self-distillation of a momentum teacher into a student, without labels.

    * student ``g_θs`` = backbone + :class:`DINOHead`; teacher ``g_θt`` of the same architecture, the EMA of the
      student ``θt ← λθt + (1 − λ)θs`` after each optimiser step with ``λ`` on a cosine schedule from
      ``dino_momentum`` (0.996) to 1 (:func:`cosine_momentum`, :func:`ema_update`); no gradients to the teacher;
    * multi-crop: two global views (``input_size``) and ``local_crops`` local views (``local_size``); the
      teacher sees only the globals, the student all;
    * centering and sharpening of the teacher output: ``P_t = softmax((g_θt(x) − c)/τ_t)`` with the centre
      ``c ← m·c + (1 − m)·mean(g_θt(x))`` (:func:`update_center`) and τ_t warmed up (:func:`teacher_temperature`);
      student ``P_s = softmax(g_θs(x)/τ_s)`` with τ_s = 0.1;
    * loss ``Σ_{global x} Σ_{x' ≠ x} H(P_t(x), P_s(x'))`` (:func:`dino_loss`);
    * the prototypes' layer is frozen during the first ``freeze_last_layer`` epochs.
    """

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig):
        super().__init__(backbone, cfg)
        d = int(backbone.num_features)
        self.head = DINOHead(d, cfg.dino_out_dim, cfg.dino_hidden_dim, cfg.dino_bottleneck_dim, cfg.norm_last_layer)
        self.teacher_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.dino_out_dim))

    def teacher_pairs(self):
        return [(self.teacher_backbone, self.backbone), (self.teacher_head, self.head)]

    def trainable_modules(self):
        return [self.backbone, self.head]

    def momentum_base(self) -> float:
        return self.cfg.dino_momentum

    def teacher_temp(self) -> float:
        c = self.cfg
        return teacher_temperature(
            self.current_epoch, c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_epochs
        )

    def pretext_step(self, batch: dict) -> torch.Tensor:
        views = batch["views"]
        b = views[0].shape[0]
        globals_ = torch.cat(views[:2])
        with torch.no_grad():
            t_out = self.teacher_head(self._embed(self.teacher_backbone, globals_))
        emb = self._embed(self.backbone, globals_)
        s_out = list(self.head(emb).split(b))
        # Local crops share a size, so they go through the student together.
        if len(views) > 2:
            s_out += list(self.head(self._embed(self.backbone, torch.cat(views[2:]))).split(b))
        temp = self.teacher_temp()
        loss = dino_loss(s_out, list(t_out.split(b)), self.center, self.cfg.student_temp, temp)
        self.center.copy_(update_center(self.center, t_out, self.cfg.center_momentum))
        self._log_common(loss, emb, b)
        self.log("train/teacher_temp", temp, on_step=False, on_epoch=True, batch_size=b)
        return loss

    def on_after_backward(self):
        if self.current_epoch < self.cfg.freeze_last_layer:
            for p in self.head.last_layer.parameters():
                p.grad = None
