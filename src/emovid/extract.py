"""Feature export (RankNet-X3D step 4): one embedding file per video, resumable, sharded over every rank.

:func:`extract_features` embeds every video under ``video_root`` (or those of a list file) with a backbone — an
emovid checkpoint folder (``IntensityScorer.feature_extractor`` for RankNet-X3D) or a registered model — and writes
one file per video, mirroring its path below ``video_root``::

    OUTPUT_DIR/
      sub/clip1.npy         float32 [D] (aggregated over clips) or [N, D] (aggregate="none")
      sub/clip1.pt          {"emb": Tensor[N, D], "length": N} (the EmoNeXt recipe's layout; [1, D] when aggregated)
      manifest.jsonl        one line per finished video (video, output, clips, dim, model, weights hash, ...)
      failures.jsonl        videos whose latest attempt failed (video, error); absent when none did

The run is a job of the shared batch engine (:mod:`emovid.engine`, a Lightning ``Trainer.predict``): all clips of a
video are decoded in DataLoader workers, embedded on the rank's device in chunks of ``batch_size``, and the video's
file is written on the rank that computed it. On many GPUs/nodes
(DDP, torchrun, SLURM) Lightning shards the videos over ranks; for prediction it uses an *unrepeated* sampler,
so no video is computed twice.

Manifest protocol (safe on network filesystems, where ``O_APPEND`` from several hosts is not atomic): a
rank never writes a file another process writes. Each finished video's file is first put in place atomically
(temp file + fsync + rename), then one line is appended to that rank's journal ``manifest.rank{R}.jsonl``.
When all ranks are done (a barrier at the end of prediction), rank 0 merges ``manifest.jsonl`` and every
journal into a new ``manifest.jsonl`` (atomic replace; one line per video, the latest wins) and deletes the
journals; ``failures.jsonl`` is rebuilt the same way from ``failures.rank{R}.jsonl``, dropping videos that
have since succeeded. A run that crashes leaves journals behind; the next run reads them as finished work
and merges them at its end.

Resuming: a video is skipped when its output file exists *and* the manifest (or a journal) lists it. A file
without a manifest line (a crash between the rename and the journal line) is recomputed and replaced
atomically. Previously failed videos are retried. A folder holds features of one setting only: rerunning
with another model, weights, clip sampler, aggregation or format is refused unless ``overwrite`` is given,
which starts the manifest afresh and recomputes every video (old feature files are replaced as they are
recomputed; files of videos no longer listed are left alone).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from emovid.engine import FAILURES, MANIFEST, Input, Job, merge_journals, read_failures, read_manifest
from emovid.engine import run as run_batch
from emovid.errors import ConfigError, InputNotFoundError
from emovid.extract_backbone import (
    Extractor,
    FramesAsClips,
    default_clips,
    load_extractor,
    make_sampler,
)
from emovid.models.base import pooled
from emovid.utils.io import atomic_open

log = logging.getLogger(__name__)

FORMATS = ("npy", "pt")
AGGREGATES = ("mean", "max", "none")
_SETTINGS = ("model", "weights_sha256", "sampler", "aggregate", "format")


# ---- videos and outputs -----------------------------------------------------------------------------------------


def _read_list(list_file: Path) -> list[str]:
    from emovid.utils.paths import check_regular_file

    check_regular_file(list_file, "list file")
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text at byte {e.start}; save the list as UTF-8", list_file) from None
    if list_file.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in ("video_path", "video", "path", "file") if c in header), None)
        body = rows[1:] if col is not None else rows
        col = col or 0
        return [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def list_videos(
    video_root: str | os.PathLike,
    list_file: str | os.PathLike | None = None,
    videos: Sequence[str] | None = None,
    ignored: list[tuple[Path, str]] | None = None,
) -> list[str]:
    """Relative POSIX paths of the videos to embed, sorted.

    Args:
        video_root: folder the videos live in (searched recursively when no list is given).
        list_file: text file with one video path per line (``#`` comments), or a CSV with a ``video_path``
            (or ``video``/``path``) column, e.g. RankNet-X3D's intensity CSV. Paths are relative to
            ``video_root`` or absolute inside it.
        videos: the same as a Python list (wins over ``list_file``).
        ignored: if given, receives entries of a folder scan named like videos that are not regular files.

    Raises:
        InputNotFoundError: ``video_root`` or ``list_file`` does not exist.
        ConfigError: nothing to embed, or a listed path outside ``video_root``.
    """
    from emovid.batch import require_inputs, scan_folder
    from emovid.video import VIDEO_EXTENSIONS

    root = Path(video_root)
    if not root.is_dir():
        raise InputNotFoundError(root, "video folder (--video-root)")
    if videos is None and list_file is not None:
        videos = _read_list(Path(list_file))
        if not videos:
            raise ConfigError(f"{list_file}: lists no videos")
    if videos is None:
        scan = scan_folder(root, VIDEO_EXTENSIONS)
        if ignored is not None:
            ignored.extend(scan.ignored)
        require_inputs(scan.files, root, "video files", scan.ignored, f"looked for {', '.join(_exts())} recursively")
        return sorted((p.relative_to(root).as_posix() for p in scan.files), key=os.fsencode)
    rels = []
    root_abs = root.resolve()
    for v in videos:
        p = Path(v)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(root_abs)
            except ValueError:
                raise ConfigError(f"{v}: listed video is outside --video-root {root}; list paths below it") from None
        rel = p.as_posix()
        if rel.startswith("../") or rel == "..":
            raise ConfigError(f"{v}: listed video is outside --video-root {root}; list paths below it")
        rels.append(rel)
    if not rels:
        raise ConfigError("no videos to embed")
    return sorted(dict.fromkeys(rels))


def _exts() -> list[str]:
    from emovid.video import VIDEO_EXTENSIONS

    return list(VIDEO_EXTENSIONS[:4]) + ["..."]


def output_name(video: str, fmt: str) -> str:
    """The feature file of a video (relative path): its path with the extension replaced by ``.npy``/``.pt``."""
    return Path(video).with_suffix(f".{fmt}").as_posix()


def aggregate_embeddings(emb: torch.Tensor, how: str) -> torch.Tensor:
    """``[N, D]`` clip embeddings → ``[D]`` (``mean``/``max``) or unchanged (``none``)."""
    if how == "mean":
        return emb.mean(0)
    if how == "max":
        return emb.max(0).values
    return emb


class ExtractJob(Job):
    """``emovid extract`` on the batch engine: decode every clip (workers), embed (device), one file per video.

    Args:
        extractor: the backbone and where its weights came from.
        loader: a :class:`~emovid.data.datasets.ClipLoader` giving all clips of a video (``with_meta=True``).
        root: the videos' folder (inputs' ids are paths below it).
        out: the output folder.
        fmt: ``npy`` or ``pt``.
        aggregate: ``mean`` | ``max`` | ``none``.
        info: fields every manifest line carries.
        clip_batch: clips per forward pass.
    """

    name = "extract"
    key = "video"
    guard = _SETTINGS

    def __init__(self, extractor: Extractor, loader, root: Path, out: Path, fmt: str, aggregate: str, info: dict,
                 clip_batch: int = 16):  # fmt: skip
        self.backbone = extractor.backbone
        self.loader, self.root, self.out = loader, Path(root), Path(out)
        self.fmt, self.aggregate, self.info = fmt, aggregate, dict(info)
        self.clip_batch = max(1, int(clip_batch))
        self.frames_as_images = int(extractor.pretrained_cfg.num_frames) == 1

    def settings(self) -> dict[str, Any]:
        return self.info

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return (self.out / output_name(item.id, self.fmt)).exists()

    def modules(self) -> list[nn.Module]:
        return [self.backbone]

    def load(self, item: Input) -> dict:
        # Deterministic per video, so even a `random:` sampler gives the same clips on a rerun.
        seed = int.from_bytes(hashlib.sha1(os.fsencode(item.id)).digest()[:8], "little")
        clips, meta = self.loader(_Video(item.id, item.path), np.random.default_rng([0, seed]))
        return {"clips": clips, "damage": meta.get("damage")}

    def process(self, item: Input, loaded: dict) -> dict:
        clips = loaded["clips"].to(next(self.backbone.parameters()).device)
        embs = []
        for i in range(0, len(clips), self.clip_batch):
            x = clips[i : i + self.clip_batch]
            if self.frames_as_images:
                x = x[:, :, 0]
            embs.append(pooled(self.backbone, x).float().cpu())  # the clip's embedding [B, D]
        return {"emb": torch.cat(embs), "damaged": loaded.get("damage")}

    def write(self, item: Input, result: dict, out: Path) -> dict[str, Any]:
        emb = result["emb"].float()
        n, dim = int(emb.shape[0]), int(emb.shape[1])
        feats = aggregate_embeddings(emb, self.aggregate)
        if self.fmt == "pt":
            feats = feats.reshape(-1, dim).contiguous()  # the EmoNeXt recipe's layout is always [N, D]
        rel = output_name(item.id, self.fmt)
        with atomic_open(out / rel, "wb") as f:
            if self.fmt == "npy":
                np.save(f, feats.numpy().astype(np.float32), allow_pickle=False)
            else:
                torch.save({"emb": feats, "length": int(feats.shape[0])}, f)
        return {"output": rel, "clips": n, "dim": dim, "shape": list(feats.shape)}


class _Video:
    """What :class:`~emovid.data.datasets.ClipLoader` needs of a record."""

    __slots__ = ("video_id", "video_path")

    def __init__(self, video_id: str, video_path: Path):
        self.video_id = video_id
        self.video_path = video_path


# ---- the run ----------------------------------------------------------------------------------------------------


def extract_features(
    video_root: str | os.PathLike | None,
    output_dir: str | os.PathLike | None,
    *,
    checkpoint: str | os.PathLike | None = None,
    model: str | nn.Module | None = None,
    pretrained: str | None = None,
    allow_size_mismatch: bool = False,
    list_file: str | os.PathLike | None = None,
    videos: Sequence[str] | None = None,
    fmt: str = "npy",
    clips: str | None = None,
    aggregate: str | None = None,
    batch_size: int = 16,
    num_workers: int = 2,
    accelerator: str = "auto",
    devices: str | int | Sequence[int] = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    overwrite: bool = False,
    progress: bool = False,
    callbacks: list | None = None,
    trainer_kwargs: dict | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Embed every video of ``video_root`` (or of a list) into ``output_dir``; resumable (see module docs).

    Args:
        video_root: folder of the videos; output paths mirror paths below it.
        output_dir: where feature files, ``manifest.jsonl`` and ``failures.jsonl`` go.
        checkpoint: an emovid checkpoint folder (its task model's ``feature_extractor`` is used).
        model: a registered model name, or a backbone module (instead of ``checkpoint``).
        pretrained: weights for a model name.
        list_file: text/CSV file naming the videos (see :func:`list_videos`); default: every video found.
        videos: the videos as a Python list of paths (wins over ``list_file``).
        fmt: ``npy`` (``float32 [D]`` or ``[N, D]``) or ``pt`` (``{"emb": Tensor[N, D], "length": N}``).
        clips: clip sampler spec (``sliding:TxS:HOP``, ``uniform:N``, ``center:TxS``, ...); default
            :func:`default_clips`.
        aggregate: ``mean`` | ``max`` over a video's clips, or ``none`` to keep one row per clip; default
            ``mean`` for npy, ``none`` for pt.
        batch_size: clips per forward pass (one video per step; long videos are split into passes).
        num_workers: DataLoader decoding processes per rank.
        accelerator, devices, num_nodes, strategy, precision: Lightning ``Trainer`` options; many devices or
            nodes shard the videos over ranks.
        overwrite: recompute every video and start the manifest afresh.
        progress: show Lightning's progress bar.
        callbacks: extra Lightning callbacks.
        trainer_kwargs: extra ``Trainer`` arguments.
        strict: damaged videos fail (default: the frames that decode are embedded, with a warning and a
            ``damaged`` record in the manifest line).

    Returns:
        Summary on rank 0: ``videos``, ``done`` (written this run), ``skipped`` (finished before),
        ``failed`` (this run), paths, model, weights hash, ``dim``, ``seconds``. Other ranks get
        ``{"rank": R, "done": ..., "failed": ...}`` for their share.

    Raises:
        EmovidError: bad input (missing folders, empty list, unknown model, not a checkpoint, settings that
            differ from the features already in ``output_dir``). Unreadable videos do not raise: they are
            listed in ``failures.jsonl``.
    """
    from emovid.data.datasets import ClipLoader
    from emovid.models import create_transform

    t0 = time.perf_counter()
    if video_root is None:
        raise ConfigError("give the folder of the videos with --video-root DIR")
    if output_dir is None:
        raise ConfigError("give the folder for the features with --output-dir DIR")
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    aggregate = (aggregate or ("mean" if fmt == "npy" else "none")).lower()
    if aggregate not in AGGREGATES:
        raise ConfigError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    ignored: list[tuple[Path, str]] = []
    all_videos = list_videos(video_root, list_file, videos, ignored)
    outputs: dict[str, str] = {}
    for v in all_videos:
        o = output_name(v, fmt)
        if o in outputs:
            raise ConfigError(f"{outputs[o]} and {v} would both be written to {o}; rename one or list only one")
        outputs[o] = v
    ext = load_extractor(checkpoint, model, pretrained, allow_size_mismatch)
    pc = ext.pretrained_cfg
    if getattr(pc, "face_crop", False):
        log.warning(
            "%s expects face crops; whole frames are embedded (face cropping comes with emovid.faces)",
            ext.model_name,
        )
    sampler = make_sampler(pc, clips)
    info = {
        "model": ext.model_name,
        "checkpoint": ext.checkpoint,
        "pretrained": ext.pretrained,
        "weights_sha256": ext.weights_sha256,
        "sampler": str(sampler),
        "aggregate": aggregate,
        "format": fmt,
    }

    out = Path(output_dir)
    short = pc.short_side or min(pc.input_size)
    loader = ClipLoader(
        sampler, create_transform(pc, train=False), short, all_clips=True, in_chans=pc.in_chans, with_meta=True
    )
    job = ExtractJob(ext, loader, Path(video_root), out, fmt, aggregate, info, batch_size)
    inputs = [Input(v, Path(video_root) / v) for v in all_videos]
    rec = run_batch(
        job,
        inputs,
        out,
        overwrite=overwrite,
        strict=strict,
        ignored=ignored,
        num_workers=num_workers,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        progress=progress,
        callbacks=callbacks,
        trainer_kwargs=trainer_kwargs,
    )
    if rec.rank:
        return {"rank": rec.rank, "done": rec.done, "failed": rec.failed}
    return {
        "videos": len(all_videos),
        "done": rec.done,
        "skipped": rec.skipped,
        "failed": rec.failed,
        "output_dir": str(out),
        "manifest": str(out / MANIFEST),
        "failures": str(out / FAILURES) if (out / FAILURES).exists() else None,
        **{k: info[k] for k in ("model", "checkpoint", "pretrained", "weights_sha256", "sampler", "aggregate")},
        "format": fmt,
        "dim": ext.num_features,
        "seconds": round(time.perf_counter() - t0, 3),
        "recorder": rec,
    }


__all__ = [
    "FAILURES",
    "MANIFEST",
    "ExtractJob",
    "Extractor",
    "FramesAsClips",
    "aggregate_embeddings",
    "default_clips",
    "extract_features",
    "list_videos",
    "load_extractor",
    "make_sampler",
    "merge_journals",
    "output_name",
    "read_failures",
    "read_manifest",
]
