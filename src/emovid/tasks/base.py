"""What every task defines, and the model wrapper all tasks share.

A task is the label reader + head + loss + metrics of one training problem, in one module. The engine
(:mod:`emovid.train`, :mod:`emovid.engine.module`) asks it for records, datasets, a head, a loss per batch,
per-video predictions on the validation set and metrics over them. Add a task by subclassing :class:`Task` and
decorating it with :func:`register_task`.

Everything the engine may ask of a task is declared on :class:`Task`: the methods a task must write raise
``NotImplementedError``; the optional ones have defaults that do what a task without them needs (no test split,
test metrics = validation metrics, ...), so callers use them directly and never probe with ``getattr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from emovid.config import TrainConfig
from emovid.data.datasets import ClipDataset
from emovid.errors import ConfigError
from emovid.models.base import pooled

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


#: Built-in task name -> the module of :mod:`emovid.tasks` that registers it (imported on first use).
BUILTIN_TASKS: dict[str, str] = {
    "intensity": "intensity",
    "vce": "vce",
    "v2v": "v2v",
    "valence_arousal": "valence_arousal",
    "retrieval": "retrieval",
    "emotion_dist": "face_sequence",
    "personality": "face_sequence",
    "fusion": "face_sequence",
}


def load_all_tasks() -> dict[str, type[Task]]:
    """Import every built-in task module; returns :data:`TASKS` (built-in and user-registered tasks)."""
    import importlib

    for module in sorted(set(BUILTIN_TASKS.values())):
        importlib.import_module(f"emovid.tasks.{module}")
    return TASKS


def get_task(name: str) -> type[Task]:
    if name not in TASKS and name in BUILTIN_TASKS:
        import importlib

        importlib.import_module(f"emovid.tasks.{BUILTIN_TASKS[name]}")
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(sorted(load_all_tasks()))}")
    return TASKS[name]


class TaskModel(nn.Module):
    """A backbone (``feature_extractor``) and a task ``head``; the unit saved in a checkpoint directory.

    ``forward(x)`` takes a clip batch ``[B, C, T, H, W]``, or cached embeddings with ``cached=True``. With
    ``sequence=True`` backbones that have ``forward_sequence`` give per-frame features ``[B, T, D]``.
    """

    def __init__(self, feature_extractor: nn.Module, head: nn.Module, sequence: bool = False):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.head = head
        self.sequence = sequence and hasattr(feature_extractor, "forward_sequence")

    @property
    def num_features(self) -> int:
        return int(self.feature_extractor.num_features)

    def features(self, x: torch.Tensor, cached: bool = False) -> torch.Tensor:
        if cached:
            return x
        if self.sequence:
            return self.feature_extractor.forward_sequence(x)
        return pooled(self.feature_extractor, x)  # the pooled embedding [B, D]

    def forward(self, x: torch.Tensor, cached: bool = False) -> torch.Tensor:
        return self.head(self.features(x, cached))


class Task:
    """Base class of a training problem.

    Every task writes :meth:`load`, :meth:`targets`, :meth:`build_head`, :meth:`training_loss`, :meth:`predict` and
    :meth:`compute_metrics`. The optional hooks, with their defaults:

    * :attr:`test_records` — a labelled test split (default: none); after training the best weights are scored on
      it with :meth:`test_metrics` (default: :meth:`compute_metrics`) into ``test_metrics.json``;
    * :attr:`takes_clip_length` — the task reads ``--clip-length`` (seconds per clip; 0: whole videos);
    * :meth:`infer` / :meth:`derive` — scoring new videos (``emovid predict``);
    * :meth:`make_backbone`, :meth:`make_loaders`, :meth:`check_inputs`, :meth:`bad_keys` — tasks with
      :attr:`uses_embeddings` train on precomputed embeddings instead of clips and must write these four;
    * :meth:`drop_videos`, :meth:`train_dataset`, :meth:`val_dataset`, :meth:`build_model` — override when the
      records are derived (pairs, lists) or the model is more than backbone + head.

    Attributes:
        name: task name used by ``emovid train NAME``.
        default_model: backbone used when ``--model`` is not given.
        monitor: validation metric that picks the best checkpoint; ``mode`` says whether higher is better.
        sample_kind: ``clip`` (one video per sample), ``pair`` or ``list`` for the training set.
        sequence: the task wants per-frame features when the backbone offers them.
        train_records / val_records / test_records: the records of each split, filled by :meth:`load`
            (``test_records`` stays empty for tasks without a test split).
    """

    name: ClassVar[str] = ""
    default_model: ClassVar[str] = "x3d_s"
    monitor: ClassVar[str] = "val/loss"
    mode: ClassVar[str] = "min"
    sample_kind: ClassVar[str] = "clip"
    sequence: ClassVar[bool] = False
    losses: ClassVar[tuple[str, ...]] = ()
    #: Trains on precomputed embeddings, not clips (then :meth:`make_backbone`, :meth:`make_loaders`,
    #: :meth:`check_inputs` and :meth:`bad_keys` are the task's).
    uses_embeddings: ClassVar[bool] = False
    #: Reads ``--clip-length`` (seconds per clip at each video's frame rate; 0: every video whole, as VAERR).
    takes_clip_length: ClassVar[bool] = False
    #: What :meth:`infer` names, in column order (``emovid predict``); ``()``: the task does not score videos.
    outputs: ClassVar[tuple[str, ...]] = ()
    #: Per-video columns :meth:`derive` adds from the aggregated outputs (e.g. VCE's ``top3``).
    derived_outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.train_records: list[Any] = []
        self.val_records: list[Any] = []
        self.test_records: list[Any] = []
        if self.losses and cfg.loss is not None and cfg.loss not in self.losses:
            raise ConfigError(f"task {self.name}: unknown loss {cfg.loss!r}; choose one of {', '.join(self.losses)}")
        self.loss_name = cfg.loss or (self.losses[0] if self.losses else None)

    # ---- data -------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read labels into ``train_records`` and ``val_records`` (records have ``video_id``/``video_path``)."""
        raise NotImplementedError

    def all_records(self) -> list[Any]:
        return list({id(r): r for r in self.train_records + self.val_records}.values())

    def drop_videos(self, bad_paths: set[str]) -> None:
        """Forget records whose video failed the preflight check (tasks with derived pairs/lists override)."""
        self.train_records = [r for r in self.train_records if str(r.video_path) not in bad_paths]
        self.val_records = [r for r in self.val_records if str(r.video_path) not in bad_paths]

    def targets(self, record: Any, frame_times: np.ndarray | None) -> dict[str, torch.Tensor]:
        """Targets of one record as tensors (``frame_times``: times of the clip's frames, for sequences)."""
        raise NotImplementedError

    def train_dataset(self, loader: Callable, epoch) -> Dataset:
        """The training set; ``epoch`` is a shared :class:`~emovid.data.datasets.EpochRef` (pairs/lists may be
        re-drawn per epoch from it)."""
        return ClipDataset(self.train_records, loader, self.targets, seed=self.cfg.seed, epoch=epoch)

    def val_dataset(self, loader: Callable) -> Dataset:
        """Validation: one sample per validation video; metrics are computed over all of them."""
        return ClipDataset(self.val_records, loader, self.targets, seed=self.cfg.seed, epoch=0)

    # ---- model ------------------------------------------------------------------------------------------------

    def build_head(self, num_features: int) -> nn.Module:
        raise NotImplementedError

    def build_model(self, backbone: nn.Module) -> TaskModel:
        return TaskModel(backbone, self.build_head(int(backbone.num_features)), sequence=self.sequence)

    # ---- steps ------------------------------------------------------------------------------------------------

    def training_loss(self, model: TaskModel, batch: dict, cached: bool) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model: TaskModel, batch: dict, cached: bool) -> dict[str, torch.Tensor]:
        """Per-sample outputs on a validation batch; must include ``index`` (the record index)."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics over the whole validation set (``outputs`` sorted by ``index``, one row per video)."""
        raise NotImplementedError

    def test_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics over :attr:`test_records` (``outputs`` as in :meth:`compute_metrics`, ``index`` into the test
        records); default: the validation metrics. Override when the test split is scored differently (e.g. over
        several sets of comparisons)."""
        return self.compute_metrics(outputs)

    # ---- tasks on precomputed embeddings (uses_embeddings) ----------------------------------------------------

    def make_backbone(self) -> nn.Module:
        """The model's input stage over embeddings (it has ``num_features``), in place of a video backbone."""
        raise NotImplementedError(f"task {self.name} trains on clips: its backbone is a registered model")

    def make_loaders(self, model: TaskModel) -> tuple[Callable, Callable]:
        """``(train_loader, eval_loader)`` reading one record's embeddings, in place of the clip loaders."""
        raise NotImplementedError(f"task {self.name} trains on clips: the engine builds its clip loaders")

    def check_inputs(self, records: list[Any]) -> list[dict]:
        """Records whose embeddings are missing, as failure lines (``video``, ``error``); checked before training."""
        raise NotImplementedError(f"task {self.name} trains on clips: its videos are checked by decoding them")

    def bad_keys(self, failures: list[dict]) -> set[str]:
        """What :meth:`drop_videos` is given for :meth:`check_inputs`'s failures."""
        raise NotImplementedError(f"task {self.name} trains on clips")

    # ---- inference on new videos (emovid.predict) ------------------------------------------------------------

    def infer(self, model: TaskModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs (:attr:`outputs`) of a batch of clips or embedding sequences, no labels needed.

        Each value is ``[B]`` (one per clip) or ``[B, T]`` (one per frame of the clip). They are the numbers
        :meth:`predict` gives for the same clips during validation, as probabilities or scores.
        """
        raise NotImplementedError(f"task {self.name} does not score videos")

    def derive(self, values: dict[str, float]) -> dict[str, object]:
        """The :attr:`derived_outputs` of one video from its aggregated outputs (default: none)."""
        return {}

    def describe(self) -> str:
        return f"{self.name}: {len(self.train_records)} train / {len(self.val_records)} val videos"


def split_records(records: list[Any], cfg: TrainConfig, key: Callable[[Any], str] = lambda r: r.video_id):
    """Deterministic train/val split by video id (no video in both)."""
    from emovid.data.splits import split_ids

    ids = [key(r) for r in records]
    sp = split_ids(ids, cfg.val_fraction, seed=cfg.split_seed)
    val = set(sp.val)
    return [r for r in records if key(r) not in val], [r for r in records if key(r) in val]
