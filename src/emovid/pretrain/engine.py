"""Self-supervised pretext pretraining of a video front-end (seed 003, VAERR): BYOL and DINO on unlabelled clips.

VAERR's finding is that a 3D-conv + ResNet-18 front-end pretrained without labels (LiRA, BYOL, DINO) beats one
trained from scratch on small affect datasets; the seed takes that step from outside repositories. This module
does it on the training engine's terms: a Lightning ``LightningModule`` per method, a data module over every
video below a folder, DDP/multi-node/AMP/resume from Lightning, and a checkpoint directory::

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

Library decision: ``lightly`` (the maintained PyPI package with BYOL/DINO heads and losses) imports
``torchvision`` at module level in ``lightly.loss`` and ``lightly.models`` (checked with lightly 1.6.0), and
torchvision cannot be installed next to the CPU torch build here; the two methods are therefore written out
below from the papers, with their equations in the docstrings.

Methods (``B`` batch, ``D`` backbone features):

* **BYOL** (Grill et al., 2020, "Bootstrap your own latent", NeurIPS): see :class:`BYOLModule`,
  :func:`byol_loss`, :func:`cosine_momentum`, :func:`ema_update`.
* **DINO** (Caron et al., 2021, "Emerging properties in self-supervised vision transformers", ICCV): see
  :class:`DINOModule`, :class:`DINOHead`, :func:`dino_loss`, :func:`update_center`, :func:`teacher_temperature`.

Video views (:class:`ClipAugment`, :class:`PretextClips`): each view of a video is its own *temporal crop* (a
clip of ``num_frames`` frames every ``frame_stride`` at an independent random position), then a random resized
spatial crop (the same window for every frame of the clip), a horizontal flip, colour jitter (brightness and
contrast; saturation and random greyscale only for RGB models), optional Gaussian blur, and the model's
normalisation. DINO adds ``local_crops`` small views (``local_size`` pixels, scale ``local_crops_scale``) seen by
the student only. All randomness of a sample comes from ``numpy.random.default_rng([seed, epoch, index])``, so
a resumed run sees the same views.

Optimisation (both methods): AdamW with linear warm-up and cosine decay of the learning rate per step;
biases and normalisation parameters get no weight decay (as DINO). The papers' LARS optimiser (BYOL) and
weight-decay schedule (DINO) are not reproduced; BYOL's solarisation and colour hue jitter are left out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from emovid.config import YamlConfig
from emovid.errors import ConfigError, EmovidError, ModelError
from emovid.utils.io import atomic_open, atomic_path, write_json
from emovid.utils.training import capture_rng, restore_rng, warmup_cosine, warmup_steps, zero_loss

log = logging.getLogger(__name__)

METHODS = ("byol", "dino")
MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.yaml"
PRETRAIN_CONFIG = "pretrain_config.yaml"
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as the models' own RGB -> grey conversion


# ---- configuration ---------------------------------------------------------------------------------------------


@dataclass
class PretrainConfig(YamlConfig):
    """Everything ``emovid pretrain`` needs; saved as ``pretrain_config.yaml`` in the output folder.

    Clip geometry defaults to the model's ``pretrained_cfg`` (``num_frames``, ``frame_stride``, ``input_size``,
    ``in_chans``); VAERR's 100-frame clips are long, so ``num_frames`` overrides it for short runs.
    Options prefixed ``byol_``/``dino_`` (and the DINO temperatures/crops) only affect their method.
    """

    method: str = "byol"
    videos: str | None = None
    output_dir: str = "runs/pretrain"
    model: str = "resnet18_3dstem"
    pretrained: str | None = None  # continue from these weights instead of random init

    # clips
    num_frames: int | None = None
    frame_stride: int | None = None
    input_size: int | None = None  # global crop side; default: min(pretrained_cfg.input_size)

    # optimisation
    epochs: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.04
    warmup_epochs: float = 10.0
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    precision: str = "32-true"
    seed: int = 0
    num_workers: int = 2

    # augmentation
    crop_scale: tuple[float, float] = (0.4, 1.0)  # global views; smaller crops lose the face on face videos
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2  # RGB models only
    grayscale_p: float = 0.2  # RGB models only
    blur: bool = True

    # BYOL
    byol_hidden_dim: int = 4096
    byol_proj_dim: int = 256
    byol_tau: float = 0.996

    # DINO
    dino_hidden_dim: int = 2048
    dino_bottleneck_dim: int = 256
    dino_out_dim: int = 4096
    dino_momentum: float = 0.996
    norm_last_layer: bool = True
    freeze_last_layer: int = 1  # epochs during which the prototypes are not updated
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    local_crops: int = 6
    local_size: int | None = None  # default: 96/224 of the global size, as DINO
    local_frames: int | None = None  # default: num_frames
    local_crops_scale: tuple[float, float] = (0.05, 0.4)

    # hardware (Lightning)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False  # BYOL/DINO normalise over the global batch on many devices

    # run control
    resume: bool = False
    max_steps: int = -1
    limit_train_batches: float | None = None
    log_every_n_steps: int = 10
    progress_bar: bool = True

    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.method = str(self.method).lower()
        if self.method not in METHODS:
            raise ConfigError(f"unknown pretext method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("crop_scale", "local_crops_scale"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
                raise ConfigError(f"{name} must be two numbers 0 < min <= max <= 1, got {getattr(self, name)!r}")
            setattr(self, name, value)
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (the projection heads use batch normalisation)")


# ---- the methods' formulas (pure functions) -------------------------------------------------------------------


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


# ---- heads ----------------------------------------------------------------------------------------------------


def byol_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector and predictor: ``Linear(in, 4096) → BatchNorm → ReLU → Linear(4096, 256)`` (Sec. 3.3)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
    )


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


# ---- clips and augmentations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSpec:
    """One view of a video: its temporal crop, spatial size and the probability of blurring it."""

    num_frames: int
    frame_stride: int
    size: int
    scale: tuple[float, float]
    blur_p: float


def random_resized_crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a window covering ``scale`` of the area with aspect ``ratio`` (w/h).

    The usual Inception-style sampling (ten tries, then the largest central window of an allowed aspect).
    """
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every frame of a ``[C, T, H, W]`` clip with the same isotropic Gaussian (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c, n, h, w = x.shape
    y = x.permute(1, 0, 2, 3)  # frames as the batch, channels grouped
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return y.permute(1, 0, 2, 3).contiguous()


class ClipAugment:
    """The spatial/photometric augmentation of one view of a ``[3, T, H, W]`` RGB clip in ``[0, 1]``.

    Random resized crop (one window for all frames) → resize to ``size`` → horizontal flip → colour jitter with
    probability ``jitter_p`` (brightness ``x·b``, contrast ``(x − mean)·c + mean`` with the clip's grey mean;
    RGB: saturation, then random greyscale) → Gaussian blur with probability ``blur_p`` (σ ∈ [0.1, 2.0]
    scaled from the papers' 224-pixel crops to ``size``) → normalisation. A model with ``in_chans=1`` gets the
    clip converted to luminance before the jitter, so only brightness and contrast apply.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float],
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int = 3,
        flip_p: float = 0.5,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)
        self.in_chans = in_chans
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
        self.flip_p, self.jitter_p = flip_p, jitter_p
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.grayscale_p, self.blur_p = grayscale_p, blur_p

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        from emovid.video.transforms import resize

        _, _, h, w = clip.shape
        top, left, ch, cw = random_resized_crop_box(h, w, self.scale, self.ratio, rng)
        x = resize(clip[..., top : top + ch, left : left + cw], (self.size, self.size))
        if rng.random() < self.flip_p:
            x = x.flip(-1)
        if self.in_chans == 1:
            x = _luma(x)
        if rng.random() < self.jitter_p:
            x = self._jitter(x, rng)
        if self.in_chans != 1 and rng.random() < self.grayscale_p:
            x = _luma(x).expand(3, -1, -1, -1)
        if self.blur_p > 0 and rng.random() < self.blur_p:
            x = gaussian_blur(x, float(rng.uniform(0.1, 2.0)) * self.size / 224)
        return ((x - self.mean) / self.std).contiguous()

    def _jitter(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.brightness:
            x = (x * rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)).clamp(0, 1)
        if self.contrast:
            m = (_luma(x) if x.shape[0] == 3 else x).mean()
            x = ((x - m) * rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast) + m).clamp(0, 1)
        if self.saturation and x.shape[0] == 3:
            g = _luma(x)
            x = ((x - g) * rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation) + g).clamp(0, 1)
        return x


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = x.new_tensor(_LUMA).view(3, 1, 1, 1)
    return (x * w).sum(0, keepdim=True)


class PretextClips(Dataset):
    """Unlabelled videos; each item is several augmented views (temporal + spatial crops) of one video.

    Args:
        videos: video files.
        views: what each view is (:class:`ViewSpec`), in the order the method wants them.
        augments: one :class:`ClipAugment` per view.
        short_side: frames are decoded at this short side (cheap resizing inside FFmpeg).
        seed: base seed; ``epoch``: the epoch this dataset serves (a number or a shared
            :class:`~emovid.data.datasets.EpochRef`, read when an item is drawn). Item ``i`` draws from
            ``default_rng([seed, epoch, i])``.

    Items: ``{"views": [Tensor[C, T_v, S_v, S_v], ...], "frames": LongTensor[V, T], "index": i}`` (``frames``:
    the decoded frame indices per view, padded with -1 for shorter views). Unreadable videos give ``None``
    (dropped by the collate function).
    """

    def __init__(
        self,
        videos: Sequence[str | os.PathLike],
        views: Sequence[ViewSpec],
        augments: Sequence[ClipAugment],
        short_side: int,
        seed: int = 0,
        epoch=0,
    ):
        self.videos = [Path(v) for v in videos]
        self.views = list(views)
        self.augments = list(augments)
        self.short_side = int(short_side)
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict | None:
        from emovid.data.datasets import sample_rng
        from emovid.video import VideoReader, random_clip_indices
        from emovid.video.transforms import to_tensor

        rng = sample_rng(self.seed, int(self.epoch), i)
        try:
            with VideoReader(self.videos[i], threads=1, thread_type="SLICE") as r:
                n = len(r)
                clips = [random_clip_indices(n, v.num_frames, v.frame_stride, rng) for v in self.views]
                h, w = r.info.height, r.info.width
                s = self.short_side / min(h, w)
                wanted = sorted({j for c in clips for j in c})
                frames = r.get_frames(wanted, size=(max(1, round(h * s)), max(1, round(w * s))))
        except EmovidError as e:  # broke after the preflight check: skip the sample, keep training
            log.warning("skipping %s: %s", self.videos[i], e)
            return None
        x = to_tensor(frames)  # [3, N, H, W]
        pos = {j: k for k, j in enumerate(wanted)}
        out = [aug(x[:, [pos[j] for j in c]], rng) for c, aug in zip(clips, self.augments, strict=True)]
        width = max(len(c) for c in clips)
        idx = torch.full((len(clips), width), -1, dtype=torch.long)
        for k, c in enumerate(clips):
            idx[k, : len(c)] = torch.tensor(c)
        return {"views": out, "frames": idx, "index": i}


# ---- Lightning modules ----------------------------------------------------------------------------------------


class _PretextModule(pl.LightningModule):
    """What BYOL and DINO share: the backbone, AdamW with warm-up + cosine, EMA after each optimiser step."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self._k = 0
        self._total: int | None = None

    def _embed(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.forward_features(x)

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


class BYOLModule(_PretextModule):
    """BYOL (Grill et al., 2020): an online network learns to predict a slowly moving target network's projection.

    * online: encoder ``f_θ`` (the backbone, ``forward_features`` → ``[B, D]``), projector ``g_θ`` and predictor
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


# ---- data module ----------------------------------------------------------------------------------------------


@dataclass
class Geometry:
    """The clip geometry of a run (from the model's ``pretrained_cfg`` and the config's overrides)."""

    num_frames: int
    frame_stride: int
    input_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    short_side: int
    local_size: int
    local_frames: int

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def geometry(cfg: PretrainConfig, backbone: nn.Module) -> Geometry:
    pc = backbone.pretrained_cfg
    n = int(cfg.num_frames or pc.num_frames)
    size = int(cfg.input_size or min(pc.input_size))
    if n < 1 or size < 8:
        raise ConfigError(f"num_frames must be >= 1 and input_size >= 8 (got {n} and {size})")
    c = int(pc.in_chans)
    mean, std = tuple(pc.mean), tuple(pc.std)
    if len(mean) != c:  # a 1-channel cfg's statistics for a 3-channel model, or the reverse
        mean, std = (mean[:1] * c, std[:1] * c) if len(mean) == 1 else (mean[:c], std[:c])
    # Decode a little larger than the crop so random resized crops keep detail (as the engine's 8/7).
    short = max(int(pc.short_side or 0), int(round(size * 8 / 7)))
    local = int(cfg.local_size or max(8, round(size * 96 / 224)))
    return Geometry(
        num_frames=n,
        frame_stride=int(cfg.frame_stride or pc.frame_stride),
        input_size=size,
        in_chans=c,
        mean=mean,
        std=std,
        short_side=short,
        local_size=local,
        local_frames=int(cfg.local_frames or n),
    )


def view_specs(cfg: PretrainConfig, geo: Geometry) -> list[ViewSpec]:
    """BYOL: two global views (blur p = 1.0 and 0.1, as the paper's asymmetric pair); DINO: the same two globals
    plus ``local_crops`` local views (blur p = 0.5)."""
    blur = (1.0, 0.1, 0.5) if cfg.blur else (0.0, 0.0, 0.0)
    g = [ViewSpec(geo.num_frames, geo.frame_stride, geo.input_size, cfg.crop_scale, blur[i]) for i in range(2)]
    if cfg.method == "dino":
        local = ViewSpec(geo.local_frames, geo.frame_stride, geo.local_size, cfg.local_crops_scale, blur[2])
        g += [local] * cfg.local_crops
    return g


def make_augments(cfg: PretrainConfig, geo: Geometry, views: Sequence[ViewSpec]) -> list[ClipAugment]:
    return [
        ClipAugment(
            v.size,
            v.scale,
            geo.mean,
            geo.std,
            in_chans=geo.in_chans,
            flip_p=cfg.flip_p,
            jitter_p=cfg.jitter_p,
            brightness=cfg.brightness,
            contrast=cfg.contrast,
            saturation=cfg.saturation,
            grayscale_p=cfg.grayscale_p,
            blur_p=v.blur_p,
        )
        for v in views
    ]


class PretextDataModule(pl.LightningDataModule):
    """Training clips; the current epoch (part of every sample's seed) lives in a shared :class:`EpochRef`."""

    def __init__(self, videos: Sequence[Path], cfg: PretrainConfig, geo: Geometry, epoch_ref=None):
        from emovid.data.datasets import EpochRef

        super().__init__()
        self.videos = list(videos)
        self.cfg, self.geo = cfg, geo
        self.views = view_specs(cfg, geo)
        self.augments = make_augments(cfg, geo, self.views)
        self.epoch_ref = epoch_ref if epoch_ref is not None else EpochRef(0)

    def dataset(self) -> PretextClips:
        return PretextClips(self.videos, self.views, self.augments, self.geo.short_side, self.cfg.seed, self.epoch_ref)

    def train_dataloader(self):
        from emovid.data.datasets import EpochShuffleSampler, collate_skip_none

        ds = self.dataset()
        return DataLoader(
            ds,
            batch_size=min(self.cfg.batch_size, len(ds)),
            sampler=EpochShuffleSampler(len(ds), self.cfg.seed, self.epoch_ref),
            num_workers=self.cfg.num_workers,
            collate_fn=collate_skip_none,
            pin_memory=torch.cuda.is_available(),
            drop_last=True,  # a batch of one breaks BatchNorm in the heads
        )


class _EpochSetter(Callback):
    """Advance the shared epoch before each epoch's loader (and its workers) starts."""

    def __init__(self, ref):
        self.ref = ref

    def on_train_epoch_start(self, trainer, pl_module):
        self.ref.epoch = trainer.current_epoch


def _resume_epoch(ckpt: Path) -> int:
    """The epoch a resumed run starts in (Lightning may build loaders before it restores its epoch counter)."""
    from emovid.models.hub import load_checkpoint

    state = load_checkpoint(ckpt)
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(state.get("epoch", -1)) + 1


# ---- checkpoint directory -------------------------------------------------------------------------------------


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


# ---- the run --------------------------------------------------------------------------------------------------


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
    from lightning.pytorch.callbacks import ModelCheckpoint

    from emovid.train import make_loggers, make_trainer

    out = Path(cfg.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if cfg.resume and not last.exists():
        raise ConfigError(f"{out}: nothing to resume (no checkpoints/last.ckpt); drop --resume to start a new run")
    if not cfg.resume and last.exists():
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or choose another --output-dir")
    if not cfg.videos:
        raise ConfigError("give the unlabelled videos with --videos DIR")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build_backbone(cfg)  # before touching the output folder: a bad model name leaves nothing behind
    geo = geometry(cfg, backbone)
    out.mkdir(parents=True, exist_ok=True)
    videos, failures = find_videos(cfg, out)
    module = (BYOLModule if cfg.method == "byol" else DINOModule)(backbone, cfg)
    from emovid.data.datasets import EpochRef

    epoch_ref = EpochRef(_resume_epoch(last) if cfg.resume else 0)
    data = PretextDataModule(videos, cfg, geo, epoch_ref)
    cfg.save(out / PRETRAIN_CONFIG)
    # One file rewritten after every epoch (Lightning's save_last only writes when a top-k file is saved).
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1, save_on_train_epoch_end=True
    )
    cbs = [_EpochSetter(epoch_ref), ckpt, ExportBackbone(cfg, geo, out), *(callbacks or [])]
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


__all__ = [
    "METHODS",
    "BYOLModule",
    "ClipAugment",
    "DINOHead",
    "DINOModule",
    "PretextClips",
    "PretrainConfig",
    "byol_loss",
    "cosine_momentum",
    "dino_loss",
    "ema_update",
    "pretrain",
    "teacher_temperature",
    "update_center",
]
