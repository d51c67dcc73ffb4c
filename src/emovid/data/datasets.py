"""PyTorch datasets over label records: clips, pairs, lists, and cached features.

A *record* is anything a reader returns (it has ``video_id`` and ``video_path``). A *loader* turns a record into
the model input: :class:`ClipLoader` decodes and transforms a clip; :class:`FeatureLoader` returns embeddings
cached by :mod:`emovid.features`. Datasets combine records, a loader and a ``targets`` function, so every task
can train on decoded video or on a feature cache without changing anything else.

Samples are dicts ``{"video": Tensor, "targets": {...}, "meta": {...}}``; pair samples hold ``video_a``/``video_b``
and ``target``; list samples hold ``videos`` ``[L, ...]`` and ``mask`` ``[L]``. Randomness (clip positions,
crops) comes from a generator seeded by ``(seed, epoch, index)``, so a resumed run sees the same samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from emovid.errors import EmovidError, display_path
from emovid.video.sampling import ClipSampler

log = logging.getLogger(__name__)

TargetsFn = Callable[[Any, np.ndarray | None], dict[str, torch.Tensor]]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class EpochRef:
    """The current epoch, shared by a training set and its sampler and advanced by the engine.

    Datasets read it when a sample is drawn (not when they are built), so a resumed run - whose loaders
    Lightning may create before it restores the epoch counter - still draws exactly the samples of the epoch
    it is in. DataLoader workers start after the engine sets it, and see the current value.
    """

    def __init__(self, epoch: int = 0):
        self.epoch = epoch

    def __int__(self) -> int:
        return self.epoch


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)`` at each pass."""

    def __init__(self, n: int, seed: int, epoch: EpochRef):
        self.n, self.seed, self.epoch_ref = n, seed, epoch

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before each epoch's pass
        self.epoch_ref.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + int(self.epoch_ref))
        return iter(torch.randperm(self.n, generator=g).tolist())


class ClipLoader:
    """Decode one clip of a video and transform it to the model input.

    A damaged video is decoded as far as it goes: clips are drawn from the frames the file holds
    (``len(reader)``, not the count its header declares), a frame inside them that does not decode repeats its
    nearest neighbour, and the reader's :attr:`~emovid.video.VideoReader.damage` says what was wrong. Only a
    video with no decodable frame raises.

    Args:
        sampler: which frames (its first clip is used unless ``all_clips``).
        transform: callable on ``[C, T, H, W]`` float clips (e.g. :func:`emovid.models.create_transform`).
        short_side: when given, frames are resized to this short side while decoding (much cheaper than
            resizing full frames in torch); the transform's own resize then has nothing to do.
        all_clips: return every clip the sampler gives, stacked ``[K, C, T, H, W]`` (sliding windows).
        in_chans: 1 converts to greyscale (face models trained on grey input).
        with_meta: return ``(clip, meta)`` with ``meta = {"frame_times": ..., "frames": len(reader),
            "damage": reader.damage}`` (``damage`` is ``None`` for a sound file) instead of ``(clip, frame_times)``.
    """

    def __init__(
        self,
        sampler: ClipSampler,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        short_side: int | None = None,
        all_clips: bool = False,
        in_chans: int = 3,
        with_meta: bool = False,
    ):
        self.sampler = sampler
        self.transform = transform
        self.short_side = short_side
        self.all_clips = all_clips
        self.in_chans = in_chans
        self.with_meta = with_meta

    def __call__(self, record: Any, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """Returns ``(clip, frame_times)``: the input tensor and the times (s) of its frames (first clip).

        With ``with_meta``: ``(clip, meta)``, the frame times being ``meta["frame_times"]``.
        """
        from emovid.video import VideoReader
        from emovid.video.transforms import Compose, to_tensor

        with VideoReader(record.video_path, threads=1, thread_type="SLICE") as r:
            clips = self.sampler(len(r), r.frame_times, rng=rng)
            if not self.all_clips:
                clips = clips[:1]
            size = None
            if self.short_side:
                info = r.info
                h, w = info.height, info.width
                s = self.short_side / min(h, w)
                size = (max(1, round(h * s)), max(1, round(w * s)))
            flat = [i for c in clips for i in c]
            frames = r.get_frames(flat, size=size, missing="nearest")
            times = r.frame_times[np.asarray(clips[0])]
            damage = r.damage  # after decoding: it counts the errors met on the way
            num_frames = len(r)
        # Augmentation draws from the sample's own generator, not the global RNG: reproducible per
        # (seed, epoch, index) in any worker and after a resume.
        gen = torch.Generator().manual_seed(int(rng.integers(2**62))) if rng is not None else None
        out = []
        for k in range(len(clips)):
            x = to_tensor(frames[k * len(clips[0]) : (k + 1) * len(clips[0])])
            if self.in_chans == 1:
                x = (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]).contiguous()
            if self.transform is not None:
                x = self.transform(x, generator=gen) if isinstance(self.transform, Compose) else self.transform(x)
            out.append(x)
        clip = torch.stack(out) if self.all_clips else out[0]
        if self.with_meta:
            return clip, {"frame_times": times, "frames": num_frames, "damage": damage}
        return clip, times


class FeatureLoader:
    """Embeddings from a feature cache (:class:`emovid.features.FeatureStore`) instead of decoding video."""

    def __init__(self, store):
        self.store = store

    def __call__(self, record: Any, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
        return self.store.get(str(record.video_id))


class ClipDataset(Dataset):
    """One sample per record.

    Args:
        records: label records (``video_id``, ``video_path``).
        loader: :class:`ClipLoader` or :class:`FeatureLoader`.
        targets_fn: ``(record, frame_times) -> {name: tensor}``.
        seed: base seed for random sampling/augmentation.
        epoch: the epoch this dataset serves (part of the seed): a number or a shared :class:`EpochRef`.
    """

    def __init__(self, records: Sequence[Any], loader, targets_fn: TargetsFn, seed: int = 0, epoch: int | EpochRef = 0):
        self.records = list(records)
        self.loader = loader
        self.targets_fn = targets_fn
        self.seed = seed
        self.epoch_ref = epoch if isinstance(epoch, EpochRef) else EpochRef(epoch)

    @property
    def epoch(self) -> int:
        return int(self.epoch_ref)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int, slot: int = 0) -> tuple[torch.Tensor, np.ndarray | None] | None:
        rec = self.records[i]
        try:
            return self.loader(rec, sample_rng(self.seed, self.epoch, i * 7 + slot))
        except EmovidError as e:  # a video broke after the preflight check: skip the sample, keep training
            log.warning("skipping %s: %s", rec.video_id, e)
            return None

    def __getitem__(self, i: int) -> dict | None:
        got = self.load(i)
        if got is None:
            return None
        x, times = got
        return {
            "video": x,
            "targets": self.targets_fn(self.records[i], times),
            "meta": {"index": i, "video_id": str(self.records[i].video_id)},
        }


class PairDataset(Dataset):
    """Pairs ``(a, b, t)`` of record indices with RankNet targets; loads both clips.

    ``pairs`` is a fixed list, or a function ``epoch -> list`` (same length every epoch) for pairs re-drawn per
    epoch; it is evaluated for the base dataset's current epoch.
    """

    def __init__(self, base: ClipDataset, pairs):
        self.base = base
        self._pairs_fn = pairs if callable(pairs) else None
        self._pairs = None if callable(pairs) else list(pairs)
        self._cached_epoch: int | None = None

    @property
    def pairs(self) -> list:
        if self._pairs_fn is None:
            return self._pairs
        if self._cached_epoch != self.base.epoch:
            self._pairs = list(self._pairs_fn(self.base.epoch))
            self._cached_epoch = self.base.epoch
        return self._pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict | None:
        a, b, t = self.pairs[k]
        ga, gb = self.base.load(a, slot=k % 5), self.base.load(b, slot=k % 5 + 1)
        if ga is None or gb is None:
            return None
        return {
            "video_a": ga[0],
            "video_b": gb[0],
            "target": torch.tensor(float(t)),
            "meta": {"a": a, "b": b},
        }


class ListDataset(Dataset):
    """Ordered lists of record indices (least → most preferred), padded to ``max_len`` with a mask."""

    def __init__(self, base: ClipDataset, lists: Sequence[Sequence[int]], max_len: int = 4):
        self.base = base
        self.lists = [list(x) for x in lists]
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, k: int) -> dict | None:
        items = self.lists[k]
        loaded = [self.base.load(i, slot=j) for j, i in enumerate(items)]
        if any(g is None for g in loaded):
            return None
        xs = [g[0] for g in loaded]
        pad = self.max_len - len(xs)
        mask = torch.tensor([True] * len(xs) + [False] * pad)
        xs += [torch.zeros_like(xs[0])] * pad
        return {"videos": torch.stack(xs), "mask": mask, "meta": {"list": k}}


def collate_skip_none(batch: list[dict | None]) -> dict | None:
    """``default_collate`` that drops samples whose video failed to load."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return default_collate(batch)


def _pad_rows(x: torch.Tensor, pad: int, dim: int = 0, value: float | None = None) -> torch.Tensor:
    """``x`` longer by ``pad`` along ``dim``: its last slice repeated, or ``value``."""
    if pad <= 0:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    if value is not None:
        last = torch.full_like(last, value)
    return torch.cat([x, last.repeat_interleave(pad, dim)], dim)


def collate_pad_time(batch: list[dict | None], length: int | None = None, time_dim: int = 1) -> dict | None:
    """:func:`collate_skip_none` for clips of different lengths (e.g. the same seconds at different frame rates).

    Each sample's ``video`` is padded along ``time_dim`` (1 for ``[C, T, H, W]`` clips, 0 for ``[T, D]`` cached
    features) to the longest in the batch, or to ``length`` when that is longer, by repeating its last frame;
    ``meta["valid"]`` (``[B, L]`` bool) marks the real frames. Per-frame tensors of ``targets`` (first dimension
    ``T``) repeat their last row; per-frame tensors of ``meta`` are padded with zeros (``False``), so a ``keep``
    mask never selects padding.
    """
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    lengths = [int(b["video"].shape[time_dim]) for b in batch]
    full = max([*lengths, length or 0])
    out = []
    for b, n in zip(batch, lengths, strict=True):
        pad = full - n

        def per_frame(x: Any, n: int = n) -> bool:
            return isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == n

        targets = {k: _pad_rows(v, pad) if per_frame(v) else v for k, v in b["targets"].items()}
        meta = {k: _pad_rows(v, pad, value=0) if per_frame(v) else v for k, v in b["meta"].items()}
        meta["valid"] = torch.arange(full) < n
        out.append({**b, "video": _pad_rows(b["video"], pad, time_dim), "targets": targets, "meta": meta})
    return default_collate(out)


class _FixedClip:
    """A sampler that always gives one clip (the frames a :class:`WindowDataset` window chose)."""

    def __init__(self, indices: list[int]):
        self.indices = list(indices)

    def __call__(self, num_frames: int, frame_times=None, rng=None) -> list[list[int]]:
        return [self.indices]

    def __str__(self) -> str:
        return f"frames:{self.indices}"


class WindowDataset(Dataset):
    """Several clips per video, one sample each: ``windows(num_frames, frame_times) -> [(indices, keep), ...]``.

    With :func:`~emovid.video.sampling.covering_clips` every frame of every video is in exactly one sample with
    ``keep`` true, so per-frame metrics cover whole videos while each sample stays one clip in memory. Each
    video is opened once here to count its frames. Samples carry ``meta`` ``index`` (the window, unique),
    ``video_index`` (the record), ``frames`` (``[T]`` frame indices) and ``keep`` (``[T]`` bool).

    Args:
        records: label records.
        loader: a :class:`ClipLoader`; its sampler is replaced by each window's frames.
        targets_fn: ``(record, frame_times) -> {name: tensor}``.
        windows: the clips of a video from its frame count and frame times.
    """

    def __init__(self, records: Sequence[Any], loader: ClipLoader, targets_fn: TargetsFn, windows: Callable):
        from emovid.video import VideoReader

        self.records = list(records)
        self.loader = loader
        self.targets_fn = targets_fn
        self.windows: list[tuple[int, list[int], list[bool]]] = []
        for i, rec in enumerate(self.records):
            try:
                with VideoReader(rec.video_path, threads=1, thread_type="NONE") as r:
                    n, times = len(r), r.frame_times
            except EmovidError as e:  # broke after the preflight check: its frames go unscored, as in ClipDataset
                log.warning("skipping %s: %s", rec.video_id, e)
                continue
            self.windows += [(i, list(idx), list(keep)) for idx, keep in windows(n, times)]
        self.max_len = max((len(w[1]) for w in self.windows), default=0)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, k: int) -> dict | None:
        import copy

        i, idx, keep = self.windows[k]
        rec = self.records[i]
        loader = copy.copy(self.loader)
        loader.sampler, loader.all_clips = _FixedClip(idx), False
        try:
            x, times = loader(rec, None)
        except EmovidError as e:
            log.warning("skipping %s: %s", rec.video_id, e)
            return None
        if isinstance(times, dict):  # a loader built with_meta
            times = times["frame_times"]
        return {
            "video": x,
            "targets": self.targets_fn(rec, times),
            "meta": {
                "index": k,
                "video_index": i,
                "video_id": str(rec.video_id),
                "frames": torch.tensor(idx),
                "keep": torch.tensor(keep),
            },
        }


def check_videos(
    records: Sequence[Any], strict: bool = False, workers: int = 4, report_path: str | Path | None = None
) -> tuple[list[Any], list[dict]]:
    """Probe every distinct video once; drop records whose video is missing or unreadable.

    Damaged-but-readable videos (frames missing against the header, a stream cut short) are kept, and one
    warning names how many there are and the first of them; with ``strict`` they fail like unreadable ones.

    Returns:
        ``(kept_records, failures)`` with one ``{"video", "error"}`` per bad video. With ``strict`` the first
        failure raises instead. ``report_path`` gets the failures as JSON lines.
    """
    from concurrent.futures import ThreadPoolExecutor

    from emovid.batch import DamagedVideoError, damage_line, describe_error
    from emovid.utils.io import atomic_open, dumps
    from emovid.video import probe

    paths = list(dict.fromkeys(str(r.video_path) for r in records))
    damaged: dict[str, str] = {}

    def check(p: str) -> str | None:
        try:
            line = damage_line(probe(p).damage)
            if line is not None:
                if strict:
                    raise DamagedVideoError(f"damaged video ({line}); refused because of --strict", p)
                damaged[p] = line
            return None
        except EmovidError as e:
            if strict:
                raise
            return e.message
        except Exception as e:  # one video's problem, whatever it is
            if strict:
                raise
            return describe_error(e)

    with ThreadPoolExecutor(max(1, workers)) as ex:
        errors = dict(zip(paths, ex.map(check, paths), strict=False))
    failures = [{"video": p, "error": e} for p, e in errors.items() if e]
    if damaged:
        first = next(iter(damaged))
        log.warning(
            "%d video(s) are damaged and are used as far as they decode (--strict skips them); first: %s: %s",
            len(damaged),
            display_path(first),
            damaged[first],
        )
    if report_path is not None and failures:
        with atomic_open(report_path) as f:
            for rec in failures:
                f.write(dumps(rec) + "\n")
    bad = {f["video"] for f in failures}
    return [r for r in records if str(r.video_path) not in bad], failures


class VideoRef:
    """A bare video reference (``video_id``, ``video_path``) for tasks whose labels are not per video (V2V)."""

    __slots__ = ("video_id", "video_path")

    def __init__(self, video_id: str, video_path: Path):
        self.video_id = video_id
        self.video_path = Path(video_path)

    def __repr__(self) -> str:
        return f"VideoRef({self.video_id!r})"
