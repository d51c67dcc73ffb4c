"""Multi-view testing (``--test-views TxS``): each test video scored on ``T`` temporal segments x ``S`` spatial
crops, the outputs averaged per video, as VideoMAE's ``final_test`` + ``merge`` do (``--test_num_segment 2
--test_num_crop 3`` in the Emodiversity VCE script).

The views follow the fork's test mode (``vce.py``): the video's frames are taken every ``stride``-th frame (the last
repeated when fewer than the clip), segment ``k`` of ``T`` starts at ``int(k * (n - clip) / (T - 1))`` of those, and
after resizing the short side to the crop size, crop ``j`` of ``S`` is the square starting at
``int(j * (long - short) / (S - 1))`` along the long side. One segment or one crop is the centre one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from emovid.errors import ConfigError


def parse_views(spec: str) -> tuple[int, int]:
    """``"2x3"`` → ``(2, 3)``: temporal segments, spatial crops."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(spec))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"--test-views {spec!r}: write SEGMENTSxCROPS, e.g. 2x3")
    return int(m.group(1)), int(m.group(2))


def _start(k: int, n: int, free: float) -> int:
    if n == 1:
        return int(max(free, 0) / 2)
    return int(k * max(free, 0) / (n - 1))


class SegmentSampler:
    """Temporal view ``segment`` of ``segments``: ``num_frames`` frames every ``stride``-th frame (see module)."""

    kind = "segment"

    def __init__(self, num_frames: int, stride: int, segment: int, segments: int):
        self.num_frames, self.stride, self.segment, self.segments = num_frames, max(1, stride), segment, segments

    def clip_frames(self, frame_times=None) -> int:
        return self.num_frames

    def __call__(self, num_frames: int, frame_times=None, rng=None) -> list[list[int]]:
        idx = list(range(0, max(1, num_frames), self.stride))
        idx += [idx[-1]] * max(0, self.num_frames - len(idx))
        start = _start(self.segment, self.segments, len(idx) - self.num_frames)
        return [idx[start : start + self.num_frames]]

    def __str__(self) -> str:
        return f"segment:{self.num_frames}x{self.stride}:{self.segment}/{self.segments}"


class SpatialCrop:
    """Resize the short side to ``size``, take square crop ``crop`` of ``crops`` along the long side, normalise."""

    def __init__(self, size: int, crop: int, crops: int, mean: Sequence[float], std: Sequence[float]):
        from emovid.video.transforms import Normalize, ResizeShortSide

        self.size, self.crop, self.crops = size, crop, crops
        self.resize = ResizeShortSide(size)
        self.normalize = Normalize(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize(x)
        h, w = x.shape[-2:]
        start = _start(self.crop, self.crops, max(h, w) - self.size)
        x = x[..., start : start + self.size, :] if h >= w else x[..., start : start + self.size]
        c = (min(h, w) - self.size) // 2  # the short side already is `size`; guard rounding
        x = x[..., c : c + self.size] if h >= w else x[..., c : c + self.size, :]
        return self.normalize(x)


def view_loaders(model, segments: int, crops: int) -> list:
    """One :class:`~emovid.data.datasets.ClipLoader` per view, from the backbone's input settings."""
    from emovid.data.datasets import ClipLoader

    pc = model.feature_extractor.pretrained_cfg
    size = min(pc.input_size)
    return [
        ClipLoader(
            SegmentSampler(pc.num_frames, pc.frame_stride, t, segments),
            SpatialCrop(size, s, crops, pc.mean, pc.std),
            size,
            in_chans=pc.in_chans,
        )
        for t in range(segments)
        for s in range(crops)
    ]


def average_views(views: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-record mean over the views of every output (a record missing from a view is averaged over the rest)."""
    by_index: dict[int, dict[str, list]] = {}
    for out in views:
        for row, i in enumerate(out["index"]):
            slot = by_index.setdefault(int(i), {})
            for k, v in out.items():
                if k != "index":
                    slot.setdefault(k, []).append(np.asarray(v[row], dtype=np.float64))
    index = np.array(sorted(by_index))
    keys = [k for k in views[0] if k != "index"] if views else []
    merged = {"index": index}
    for k in keys:
        merged[k] = np.stack([np.mean(by_index[i][k], axis=0) for i in index]).astype(np.float32)
    return merged


@torch.no_grad()
def predict_loader(task, model, records: list, loader, batch_size: int, num_workers: int, device, seed: int = 0):
    """The task's per-record outputs on ``records`` through ``loader`` (eval mode, no gradients)."""
    from torch.utils.data import DataLoader

    from emovid.data.datasets import ClipDataset, collate_skip_none

    ds = ClipDataset(records, loader, task.targets, seed=seed)
    dl = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skip_none)
    model.eval()
    parts: list[dict[str, np.ndarray]] = []
    for batch in dl:
        if batch is None:
            continue
        batch = _to(batch, device)
        out = task.predict(model, batch, False)
        parts.append({k: torch.as_tensor(v).detach().float().cpu().numpy() for k, v in out.items()})
    if not parts:
        return {}
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cat["index"] = cat["index"].astype(np.int64)
    return cat


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def evaluate_views(task, model, records: list, cfg, device="cpu") -> dict[str, float]:
    """Metrics of ``model`` on ``records`` with ``cfg.test_views`` views averaged per video."""
    segments, crops = parse_views(cfg.test_views)
    views = [
        predict_loader(task, model, records, loader, cfg.batch_size, cfg.num_workers, device, cfg.seed)
        for loader in view_loaders(model, segments, crops)
    ]
    views = [v for v in views if v]
    if not views:
        return {}
    merged = average_views(views)
    saved = task.val_records
    task.val_records = records
    try:
        metrics = task.test_metrics(merged)
    finally:
        task.val_records = saved
    out = {k: float(v) for k, v in metrics.items() if v is not None}
    out["views"] = float(segments * crops)
    return out
