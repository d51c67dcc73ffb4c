"""From a config to what a run trains: the task and its model, clip loaders, a checked list of videos.

* :func:`build_task_model` — the task's model on a registered backbone, starting from the configured weights.
* :func:`prepare` — labels read, splits checked, model built; :func:`weights_note` says which weights it starts from.
* :func:`_loaders` — the training and evaluation clip loaders of the model's input settings.
* :func:`preflight` — every video checked before training; unreadable ones are skipped and listed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from emovid.config import TrainConfig
from emovid.engine.model_dir import _geometry as _geometry
from emovid.engine.model_dir import build_task_model
from emovid.errors import ConfigError, EmovidError
from emovid.tasks.base import Task, TaskModel, get_task
from emovid.utils.io import atomic_open

log = logging.getLogger("emovid.train")
# What every run says before it trains (weights, split sizes): the CLI prints this logger's INFO lines on stdout.
run_log = logging.getLogger("emovid.run")


class WholeVideoSampler:
    """Every ``stride``-th frame of the whole video as one clip (VAERR's ``--clip_length 0``)."""

    kind = "whole"

    def __init__(self, stride: int = 1):
        self.stride = max(1, int(stride))

    def clip_frames(self, frame_times=None) -> int:
        return max(1, -(-len(frame_times) // self.stride)) if frame_times is not None else 1

    def __call__(self, num_frames: int, frame_times=None, rng=None) -> list[list[int]]:
        return [list(range(0, max(1, num_frames), self.stride))]

    def __str__(self) -> str:
        return f"whole:x{self.stride}"


class EvenlySpacedSampler:
    """``n`` frames evenly spaced over the whole video, first and last included: ``round(linspace(0, N - 1, n))``
    (the Emodiversity V2V loader's ``get_n_evenly_spaced``); spec ``linspace:N``."""

    kind = "linspace"

    def __init__(self, n: int):
        self.num_frames = int(n)
        self.stride = 1

    def clip_frames(self, frame_times=None) -> int:
        return self.num_frames

    def __call__(self, num_frames: int, frame_times=None, rng=None) -> list[list[int]]:
        import numpy as np

        return [np.round(np.linspace(0, max(0, num_frames - 1), self.num_frames)).astype(int).tolist()]

    def __str__(self) -> str:
        return f"linspace:{self.num_frames}"


def make_sampler(spec: str):
    """:func:`~emovid.video.sampling.parse_sampler`, plus ``linspace:N`` (:class:`EvenlySpacedSampler`) and ``whole``
    / ``whole:xS`` (:class:`WholeVideoSampler`: every S-th frame of the entire video)."""
    from emovid.video.sampling import parse_sampler

    kind, _, rest = spec.partition(":")
    if kind.strip().lower() == "whole":
        try:
            stride = int(rest.strip().lstrip("x") or 1)
        except ValueError:
            stride = 0
        if stride < 1:
            raise ConfigError(f"bad sampler spec {spec!r}; use whole or whole:xS with a frame step S >= 1")
        return WholeVideoSampler(stride)
    if kind.strip().lower() == "linspace":
        try:
            n = int(rest)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"bad sampler spec {spec!r}; use linspace:N with N >= 1")
        return EvenlySpacedSampler(n)
    return parse_sampler(spec)


def _loaders(cfg: TrainConfig, task: Task, model: TaskModel):
    if task.uses_embeddings:
        return task.make_loaders(model)
    from emovid.data.datasets import ClipLoader
    from emovid.models import create_transform

    pc = model.feature_extractor.pretrained_cfg
    n, stride = pc.num_frames, pc.frame_stride
    clip = str(n)
    if task.takes_clip_length and cfg.clip_length:
        clip = f"{cfg.clip_length:g}s"  # --clip-length seconds: frames from each video's own frame rate
    eval_s = make_sampler(cfg.eval_sampler or f"center:{clip}x{stride}")
    # --no-augment (and the feature cache) train on the deterministic evaluation clip of each video.
    default_train = f"random:{clip}x{stride}" if cfg.augment and not cfg.cache_features else str(eval_s)
    train_s = make_sampler(cfg.train_sampler or default_train)
    if task.takes_clip_length and cfg.clip_length == 0:  # VAERR: 0 = the entire video
        if not cfg.train_sampler:
            train_s = WholeVideoSampler(stride)
        if not cfg.eval_sampler:
            eval_s = WholeVideoSampler(stride)
    crop = min(pc.input_size)
    short_eval = pc.short_side or crop
    short_train = pc.short_side or int(round(crop * 8 / 7))
    augment = cfg.augment and not cfg.cache_features
    if cfg.resize not in ("crop", "squash"):
        raise ConfigError(f"unknown --resize {cfg.resize!r}; choose crop or squash")
    if cfg.resize == "squash":
        # the Emodiversity V2V loader: frames resized to the input size (aspect not kept), no crop, no flip
        from emovid.video.transforms import Compose, Normalize, Resize

        squash = Compose([Resize(tuple(pc.input_size)), Normalize(pc.mean, pc.std)])
        eval_loader = ClipLoader(eval_s, squash, None, in_chans=pc.in_chans)
        return ClipLoader(train_s, squash, None, in_chans=pc.in_chans), eval_loader
    train_tf = create_transform(pc, train=augment)
    eval_tf = create_transform(pc, train=False)
    train_loader = ClipLoader(train_s, train_tf, short_train if augment else short_eval, in_chans=pc.in_chans)
    eval_loader = ClipLoader(eval_s, eval_tf, short_eval, in_chans=pc.in_chans)
    return train_loader, eval_loader


def prepare(cfg: TrainConfig) -> tuple[Task, TaskModel]:
    """Read labels, check videos, build the model (no training)."""
    task = get_task(cfg.task)(cfg)
    task.load()
    if not task.train_records:
        raise ConfigError(f"{cfg.data}: the training split is empty")
    if not task.val_records:
        raise ConfigError(f"{cfg.data}: the validation split is empty (raise --val-fraction or add videos)")
    model = build_task_model(cfg, task)
    _note(weights_note(cfg, task, model))
    return task, model


def weights_note(cfg: TrainConfig, task: Task, model: TaskModel) -> str:
    """One line saying which weights the model starts from (``random init`` when none)."""
    from emovid.models import default_weights

    if task.name == "fusion":
        return (
            f"fusion: emotion head from {cfg.emotion_checkpoint}, personality head from {cfg.personality_checkpoint}; "
            "fusion layers: random init"
        )
    if task.uses_embeddings:
        return f"{task.name}: a head on the face embeddings in {cfg.video_root}, random init"
    backbone = model.feature_extractor
    name = getattr(backbone, "model_name", None) or cfg.model or task.default_model
    report = getattr(backbone, "load_report", None)
    if report is None:
        why = "--pretrained none" if cfg.pretrained is not None else "it has no published weights"
        return f"{name}: random init ({why})"
    spec = str(default_weights(name, cfg.pretrained))
    where = report.source if spec == report.source else f"{spec} ({report.source})"
    rest = str(report).partition("; ")[2]  # missing / unexpected / skipped tensors, when any
    return f"{name}: weights {where}" + (f"; {rest}" if rest else "")


def _note(line: str) -> None:
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0:  # once per run, not per DDP rank
        run_log.info("%s", line)


def split_note(task: Task, failures: list[dict]) -> str:
    """``train 160 videos, val 40, test 20`` (+ how many were skipped): the data the run will use."""
    line = f"train {len(task.train_records)} videos, val {len(task.val_records)}"
    test = task.test_records
    if test:
        line += f", test {len(test)}"
    if failures:
        line += f" ({len(failures)} skipped, see failures.jsonl)"
    return line


def preflight(task: Task, cfg: TrainConfig, out: Path) -> list[dict]:
    from emovid.data.datasets import check_videos

    recs = task.all_records() + list(task.test_records)
    if task.uses_embeddings:
        failures = task.check_inputs(recs)
        if failures and cfg.strict:
            raise EmovidError(f"{failures[0]['video']}: {failures[0]['error']}")
    else:
        _, failures = check_videos(recs, strict=cfg.strict, workers=max(2, cfg.num_workers))
    if not failures:  # a list from an earlier, failed attempt in this folder would describe this run wrongly
        (out / "failures.jsonl").unlink(missing_ok=True)
    if failures and task.uses_embeddings:
        with atomic_open(out / "failures.jsonl") as f:
            for rec in failures:
                f.write(json.dumps(rec) + "\n")
        task.drop_videos(task.bad_keys(failures))
        log.warning("skipping %d videos without embeddings (listed in %s)", len(failures), out / "failures.jsonl")
        if not task.train_records or not task.val_records:
            from emovid.tasks.face_sequence import EmbeddingLoader

            searched = EmbeddingLoader(task._root()).searched([f["video"] for f in failures])
            raise EmovidError(
                f"no usable videos left: {len(failures)} of {len(recs)} have no embedding file ({searched}; "
                f"all listed in {out / 'failures.jsonl'}); run `emovid faces embed` for them or check --video-root"
            )
    elif failures:
        with atomic_open(out / "failures.jsonl") as f:
            for rec in failures:
                f.write(json.dumps(rec) + "\n")
        bad = {f["video"] for f in failures}
        task.drop_videos(bad)
        task.test_records = [r for r in task.test_records if str(r.video_path) not in bad]
        log.warning("skipping %d unreadable videos (listed in %s)", len(failures), out / "failures.jsonl")
        if not task.train_records or not task.val_records:
            first = failures[0]
            raise EmovidError(
                f"no usable videos left after skipping {len(failures)} unreadable ones, e.g. {first['video']}: "
                f"{first['error']} (all listed in {out / 'failures.jsonl'}); check --video-root"
            )
    return failures
