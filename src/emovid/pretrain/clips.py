"""Unlabelled training clips: the views' dataset, the run's clip geometry and the Lightning data module."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from emovid.engine.callbacks import _EpochSetter as _EpochSetter
from emovid.engine.checkpoint import _resume_epoch as _resume_epoch
from emovid.errors import ConfigError, EmovidError
from emovid.pretrain.augment import ClipAugment, ViewSpec
from emovid.pretrain.config import PretrainConfig

log = logging.getLogger(__name__)


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
