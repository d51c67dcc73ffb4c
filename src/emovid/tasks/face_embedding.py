"""Face-embedding sequence tasks ``emotion_dist`` and ``personality``, and their shared data loading.

Both train on the per-video face-embedding sequences written by ``emovid faces embed``; see
:mod:`emovid.tasks.face_sequence` for the file layout, labels, losses and metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.readers.mosei import MOSEI_CLASSES
from emovid.errors import ConfigError, EmovidError
from emovid.losses import balanced_kl_div, inverse_frequency_weights
from emovid.models.hub import load_checkpoint
from emovid.tasks.base import Task, TaskModel, register_task, split_records


class EmbeddingLoader:
    """Reads ``{"emb": [N, D], "length": n}`` files written by ``emovid faces embed``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._index: dict[str, Path] | None = None

    def path(self, video_id: str) -> Path | None:
        if self._index is None:
            self._index = {p.stem: p for p in sorted(_pt_files(self.root))}
        return self._index.get(str(video_id))

    def searched(self, video_ids: list[str]) -> str:
        """What :meth:`path` looked for, and what it found instead (for error messages)."""
        self.path("")
        found = sorted(self._index or {})
        example = f" (e.g. {video_ids[0]}.pt)" if video_ids else ""
        names = ", ".join(f"{n}.pt" for n in found[:3])
        seen = f"found {len(found)} .pt files, e.g. {names}" if found else "found none"
        return f"looked for VIDEO_ID.pt{example} in {self.root} and its sub-folders, symlinks followed: {seen}"

    def __call__(self, record, rng=None) -> tuple[torch.Tensor, None]:
        p = self.path(record.video_id)
        if p is None:
            raise EmovidError(
                f"no embedding file for video {record.video_id!r} ({self.searched([record.video_id])}); "
                "run `emovid faces embed`",
                self.root,
            )
        d = load_checkpoint(p)
        emb = d["emb"] if isinstance(d, dict) else d
        return emb.float(), None


def _pt_files(root: Path) -> list[Path]:
    """The ``.pt`` files under ``root``, following symlinked folders (``Path.rglob`` does not), each folder once."""
    out: list[Path] = []
    visited: set[str] = set()
    for folder, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a link back up the tree (or two links to one folder): do not walk it again
            subdirs[:] = []
            continue
        visited.add(real)
        out += [Path(folder) / f for f in files if f.endswith(".pt")]
    return out


class _EmbeddingTask(Task):
    uses_embeddings = True
    num_outputs = 0

    def _root(self) -> Path:
        root = self.cfg.video_root or self.cfg.extra.get("features")
        if not root:
            raise ConfigError(f"{self.name}: give the embedding folder (from `emovid faces embed`) with --video-root")
        if not Path(root).is_dir():
            raise ConfigError(f"{root}: no such embedding folder")
        return Path(root)

    def make_loaders(self, model):
        loader = EmbeddingLoader(self._root())
        return loader, loader

    def check_inputs(self, records) -> list[dict]:
        loader = EmbeddingLoader(self._root())
        return [
            {"video": str(r.video_id), "error": f"no {r.video_id}.pt under {loader.root}; run `emovid faces embed`"}
            for r in records
            if loader.path(r.video_id) is None
        ]

    def bad_keys(self, failures: list[dict]) -> set[str]:
        return {f["video"] for f in failures}

    def drop_videos(self, bad: set[str]) -> None:
        self.train_records = [r for r in self.train_records if str(r.video_id) not in bad]
        self.val_records = [r for r in self.val_records if str(r.video_id) not in bad]
        self.test_records = [r for r in self.test_records if str(r.video_id) not in bad]

    def make_backbone(self):
        from emovid.models.heads import EmbeddingInput

        dim = self.cfg.model_args.get("dim")
        if dim is None:  # first training run: read it from the data and remember it in the config
            loader = EmbeddingLoader(self._root())
            first = next((loader.path(r.video_id) for r in self.train_records if loader.path(r.video_id)), None)
            if first is None:
                ids = [str(r.video_id) for r in self.train_records]
                raise ConfigError(
                    f"{self._root()}: no embedding file for any of the {len(ids)} training videos "
                    f"({loader.searched(ids)}); run `emovid faces embed` for them or check --video-root"
                )
            dim = int(load_checkpoint(first)["emb"].shape[-1])
            self.cfg.model_args["dim"] = dim
            self._record_recipe(self._root())
        self.cfg.model = "embeddings"
        return EmbeddingInput(int(dim))

    def _record_recipe(self, root: Path, fallback: dict | None = None) -> None:
        """Keep how the embeddings were made (face model, crops) in the config, for inference on new videos."""
        from emovid.faces.embed import find_recipe

        recipe = find_recipe(root) or fallback
        if recipe:
            keys = ("model", "weights", "num_crops", "margin", "detector")
            self.cfg.model_args["face_embedder"] = {k: recipe[k] for k in keys if k in recipe}

    def build_head(self, num_features: int) -> nn.Module:
        from emovid.models.heads import SequenceTransformer

        return SequenceTransformer(num_features, self.num_outputs)

    def build_model(self, backbone: nn.Module) -> TaskModel:
        return TaskModel(backbone, self.build_head(int(backbone.num_features)))


def official_split(records: list) -> tuple[list, list, list] | None:
    """``(train, dev, test)`` from a MOSEI CSV's ``split`` column, or ``None`` when it has no train/dev split."""
    splits = {r.split for r in records}
    if not ({"train", "dev"} <= splits or {"train", "val"} <= splits):
        return None
    return (
        [r for r in records if r.split == "train"],
        [r for r in records if r.split in ("dev", "val", "valid")],
        [r for r in records if r.split == "test"],
    )


@register_task
class EmotionDistTask(_EmbeddingTask):
    name = "emotion_dist"
    monitor = "val/kl"
    mode = "min"
    num_outputs = 7
    outputs = MOSEI_CLASSES  # a distribution (softmax)

    def load(self) -> None:
        from emovid.data.readers.mosei import read_mosei_csv

        if not self.cfg.data:
            raise ConfigError("emotion_dist: give the MOSEI labels with --data FILE.csv")
        records = read_mosei_csv(self.cfg.data, self.cfg.video_root)
        official = official_split(records)
        if official is not None:
            self.train_records, self.val_records, self.test_records = official
        else:
            self.train_records, self.val_records = split_records(records, self.cfg)
            self.test_records = []
        if self.train_records:
            t = torch.tensor([r.distribution for r in self.train_records])
            self.class_weights = inverse_frequency_weights(t)

    def targets(self, record, frame_times):
        return {"distribution": torch.tensor(record.distribution, dtype=torch.float32)}

    def training_loss(self, model, batch, cached):
        logp = torch.log_softmax(model(batch["video"], cached), -1)
        return balanced_kl_div(logp, batch["targets"]["distribution"], getattr(self, "class_weights", None))

    def predict(self, model, batch, cached):
        return {
            "index": batch["meta"]["index"],
            "prob": torch.softmax(model(batch["video"], cached), -1),
            "target": batch["targets"]["distribution"],
        }

    def infer(self, model, x):
        p = torch.softmax(model(x, True), -1)
        return {c: p[:, k] for k, c in enumerate(MOSEI_CLASSES)}

    def compute_metrics(self, outputs):
        p, t = outputs["prob"], outputs["target"]
        kl = np.where(t > 0, t * (np.log(np.clip(t, 1e-12, None)) - np.log(np.clip(p, 1e-12, None))), 0).sum(1)
        return {"kl": float(kl.mean()), "top1": float(np.mean(p.argmax(1) == t.argmax(1)))}


@register_task
class PersonalityTask(_EmbeddingTask):
    name = "personality"
    monitor = "val/mean_acc"
    mode = "max"
    num_outputs = 5
    outputs = FIV2_TRAITS  # in [0, 1] (sigmoid)

    def load(self) -> None:
        from emovid.data.readers.fiv2 import read_fiv2, training_annotations

        if not self.cfg.data:
            raise ConfigError(
                "personality: give the FIV2 labels with --data annotation_training.pkl (or the folder holding it)"
            )
        records = read_fiv2(training_annotations(self.cfg.data), video_dirs=[])
        self.train_records, self.val_records = split_records(records, self.cfg, key=lambda r: r.youtube_id)
        self.test_records = []

    def targets(self, record, frame_times):
        return {"traits": torch.tensor(record.traits, dtype=torch.float32)}

    def training_loss(self, model, batch, cached):
        return F.mse_loss(torch.sigmoid(model(batch["video"], cached)), batch["targets"]["traits"])

    def predict(self, model, batch, cached):
        return {
            "index": batch["meta"]["index"],
            "pred": torch.sigmoid(model(batch["video"], cached)),
            "target": batch["targets"]["traits"],
        }

    def infer(self, model, x):
        p = torch.sigmoid(model(x, True))
        return {t: p[:, k] for k, t in enumerate(FIV2_TRAITS)}

    def compute_metrics(self, outputs):
        from torchmetrics.functional import concordance_corrcoef

        p, t = outputs["pred"], outputs["target"]
        mae = float(np.abs(p - t).mean())
        out = {"mse": float(((p - t) ** 2).mean()), "mae": mae, "mean_acc": 1.0 - mae}
        if len(p) > 2:
            c = concordance_corrcoef(torch.as_tensor(p).double(), torch.as_tensor(t).double())
            # torchmetrics gives NaN for a constant column; Lin's CCC is 0 there (no covariance), and a NaN
            # left out of the mean would let a predictor constant on 4 of 5 traits report its one good trait.
            out["ccc"] = float(torch.nan_to_num(c, nan=0.0).mean())
        return out
