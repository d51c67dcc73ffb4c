"""Embedding many videos once: the feature cache behind ``--cache-features``.

:func:`embed_videos` runs a frozen backbone over videos in batches (decoding in DataLoader workers) and hands each
video's embedding to a callback; :class:`FeatureStore` keeps them on disk, one file per video, so a cache can be
filled incrementally and reused by later runs with the same backbone and clip settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emovid.models.base import pooled
from emovid.models.hub import load_checkpoint
from emovid.utils.io import atomic_path


def _safe_name(video_id: str) -> str:
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)[-80:]
    return f"{stem}-{digest}"


class FeatureStore:
    """One ``.pt`` file per video id (``{"emb": Tensor, "times": ndarray | None}``) under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._mem: dict[str, tuple[torch.Tensor, np.ndarray | None]] = {}

    def path(self, video_id: str) -> Path:
        return self.root / f"{_safe_name(str(video_id))}.pt"

    def has(self, video_id: str) -> bool:
        return self.path(video_id).exists()

    def put(self, video_id: str, emb: torch.Tensor, times: np.ndarray | None = None) -> None:
        with atomic_path(self.path(video_id)) as tmp:
            torch.save({"emb": emb.detach().cpu().contiguous(), "times": times}, tmp)

    def get(self, video_id: str) -> tuple[torch.Tensor, np.ndarray | None]:
        hit = self._mem.get(video_id)
        if hit is None:
            d = load_checkpoint(self.path(video_id))
            hit = (d["emb"], d["times"])
            self._mem[video_id] = hit
        return hit


class _VideoSet(torch.utils.data.Dataset):
    def __init__(self, records: Sequence[Any], loader: Callable):
        self.records, self.loader = list(records), loader

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        from emovid.errors import EmovidError

        try:
            x, times = self.loader(self.records[i], np.random.default_rng(0))
        except EmovidError as e:
            return {"i": i, "error": e.message}
        return {"i": i, "x": x, "times": np.asarray(times) if times is not None else None}


def _collate(batch):
    return batch


@torch.inference_mode()
def embed_videos(
    records: Sequence[Any],
    loader: Callable,
    embed: Callable[[torch.Tensor], torch.Tensor],
    on_result: Callable[[Any, torch.Tensor, np.ndarray | None], None],
    on_error: Callable[[Any, str], None] | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> None:
    """Decode ``records`` with ``loader`` and call ``on_result(record, embedding, frame_times)`` for each.

    ``embed`` maps a batch ``[B, ...]`` to embeddings ``[B, ...]``; clips of different shapes are batched
    separately. Unreadable videos go to ``on_error(record, message)`` and the rest continue.
    """
    from torch.utils.data import DataLoader

    dl = DataLoader(_VideoSet(records, loader), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    it = dl
    if progress:
        from tqdm import tqdm

        it = tqdm(dl, desc="embedding", unit="batch")
    for batch in it:
        ok = [b for b in batch if "x" in b]
        for b in batch:
            if "error" in b and on_error is not None:
                on_error(records[b["i"]], b["error"])
        groups: dict[tuple, list[dict]] = {}
        for b in ok:
            groups.setdefault(tuple(b["x"].shape), []).append(b)
        for items in groups.values():
            x = torch.stack([b["x"] for b in items]).to(device)
            embs = embed(x).float().cpu()
            for b, e in zip(items, embs, strict=False):
                on_result(records[b["i"]], e, b["times"])


def cache_key(model, loader, sequence: bool) -> str:
    pc = model.feature_extractor.pretrained_cfg
    spec = {
        "model": getattr(model.feature_extractor, "model_name", type(model.feature_extractor).__name__),
        "sampler": str(loader.sampler),
        "short_side": loader.short_side,
        "transform": repr(loader.transform),
        "sequence": sequence,
        "params": _param_digest(model.feature_extractor),
        "input": list(pc.input_size),
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _param_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        t = v.detach().float().flatten()
        h.update(np.asarray([float(t.sum()), float(t.abs().sum()), t.numel()]).tobytes())
    return h.hexdigest()[:16]


def cache_features(task, model, eval_loader, cache_root: Path, cfg) -> tuple[Any, Any]:
    """Fill the cache for every record of ``task`` with the frozen backbone; return feature loaders.

    The cache sits in ``cache_root/<key>`` where the key covers the backbone's weights, the clip sampler and the
    transform, so a changed setting never reads stale features. Training then sees the evaluation clip of each
    video (no per-epoch clip or crop augmentation): that is the price of decoding once.
    """
    from emovid.data.datasets import FeatureLoader

    sequence = bool(getattr(model, "sequence", False))
    store = FeatureStore(Path(cache_root) / cache_key(model, eval_loader, sequence))
    records = task.all_records() + list(task.test_records)
    todo = list({str(r.video_id): r for r in records if not store.has(str(r.video_id))}.values())
    if todo:
        fe = model.feature_extractor.eval()
        device = "cuda" if torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda") else "cpu"
        fe.to(device)
        embed = fe.forward_sequence if sequence else functools.partial(pooled, fe)  # [B, T, D] or [B, D]
        embed_videos(
            todo,
            eval_loader,
            embed,
            lambda r, e, t: store.put(str(r.video_id), e, t),
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            device=device,
            progress=cfg.progress_bar,
        )
        fe.to("cpu")
    loader = FeatureLoader(store)
    return loader, loader
