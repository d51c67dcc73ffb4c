"""Seed 001's heads: CMU-MOSEI emotions (``emotion_dist``) and First Impressions V2 personality (``personality``).

Both train on per-video face-embedding sequences written by ``emovid faces embed`` (``ROOT/SPLIT/VIDEO.pt``
holding ``{"emb": Tensor[30, D], "length": n}``, zero rows for missing faces), given as ``--video-root ROOT``
(``--features`` is an alias). The head is a small Transformer over the sequence
(:class:`emovid.models.heads.SequenceTransformer`).

* ``emotion_dist``: labels from a MOSEI CSV (``video_id,happy,sad,anger,surprise,disgust,fear[,split]``) turned
  into the 7-class distribution of :mod:`emovid.data.readers.mosei`; loss: class-balanced ``KLDivLoss`` to the
  softmax targets (weights inversely proportional to each class's mass in the training set); metrics: KL
  divergence, top-1 agreement of the predicted and labelled strongest class. The CSV's ``split`` column
  (train/dev/test) is used when present.
* ``personality``: labels from an FIV2 annotation pickle (OCEAN kept); loss: MSE on sigmoid outputs; metrics:
  MSE, MAE, mean accuracy ``1 - MAE`` (the challenge's score) and CCC averaged over the traits (a constant
  prediction of a trait scores 0 for it). Videos are split by their
  source YouTube video, so clips of one person never sit on both sides.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


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
        self.test_records = [r for r in getattr(self, "test_records", []) if str(r.video_id) not in bad]

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


def _run_config(folder: str | Path):
    """The ``train_config.yaml`` of a trained run, or ``None`` when the folder has none."""
    from emovid.config import TrainConfig
    from emovid.train import TRAIN_CONFIG

    path = Path(folder) / TRAIN_CONFIG
    return TrainConfig.from_yaml(path) if path.is_file() else None


def _fitted_keys(head_cfg, task_cls, key) -> set[str] | None:
    """Keys of the records a trained head was fitted on: its own run's split of its own labels, re-drawn.

    ``None`` when that cannot be known (no config, or its label file is gone).
    """
    if head_cfg is None or not head_cfg.data or not Path(head_cfg.data).exists():
        return None
    head = task_cls(head_cfg)
    try:
        head.load()
    except EmovidError as e:
        log.warning("fusion: cannot re-read the labels the %s head was trained on (%s)", head_cfg.task, e)
        return None
    return {str(key(r)) for r in head.train_records}


def _withhold_fitted(train: list, held: list[list], fitted: set[str] | None, key, what: str) -> list:
    """Move held-out records (validation, test) that a frozen head was fitted on into ``train``, in place."""
    if not fitted:
        return train
    moved = 0
    for part in held:
        keep = [r for r in part if str(key(r)) not in fitted]
        moved += len(part) - len(keep)
        train = train + [r for r in part if str(key(r)) in fitted]
        part[:] = keep
    if moved:
        log.warning(
            "fusion: %d held-out %s videos were in the frozen head's training set; they train the fusion model "
            "instead, so validation and test stay unseen by every part of it",
            moved,
            what,
        )
    return train


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


@register_task
class FusionTask(_EmbeddingTask):
    """``fusion``: seed 001's MultiTaskFusionModel over both datasets at once.

    ``--data`` is the MOSEI CSV, ``--data2`` the FIV2 pickle, ``--video-root`` a folder holding the embeddings
    of both (searched recursively by video id); ``--emotion-checkpoint`` and ``--personality-checkpoint`` are the
    trained ``emotion_dist`` and ``personality`` runs, frozen inside the fusion model. Each video contributes the
    loss of the labels it has (balanced KL for emotions, MSE for traits).

    Splits: validation must be unseen by every part of the model, the frozen heads included. MOSEI rows follow the
    CSV's official ``split`` column when it has one (train / dev for validation / test, scored at the end into
    ``test_metrics.json``), as ``emotion_dist`` does; otherwise, and for FIV2, the split is the one each head's
    own run drew (its recorded ``val_fraction`` and ``split_seed``). A held-out video that a head was trained on
    all the same (its run's labels are re-read to check) moves to fusion training, with a warning.
    """

    name = "fusion"
    monitor = "val/score"
    mode = "max"
    outputs = (*MOSEI_CLASSES, *FIV2_TRAITS)

    def load(self) -> None:
        from emovid.data.readers.fiv2 import read_fiv2, training_annotations
        from emovid.data.readers.mosei import read_mosei_csv

        if not (self.cfg.data and self.cfg.data2):
            raise ConfigError("fusion: give --data MOSEI.csv and --data2 annotation_training.pkl (or the FIV2 folder)")
        if not (self.cfg.emotion_checkpoint and self.cfg.personality_checkpoint):
            raise ConfigError("fusion: give the trained heads with --emotion-checkpoint and --personality-checkpoint")
        mosei = read_mosei_csv(self.cfg.data, self.cfg.video_root)
        fiv2 = read_fiv2(training_annotations(self.cfg.data2), video_dirs=[])
        emo_cfg = _run_config(self.cfg.emotion_checkpoint)
        per_cfg = _run_config(self.cfg.personality_checkpoint)
        official = official_split(mosei)
        if official is not None:
            tr_m, va_m, te_m = official
        else:  # the emotion head's own split (its val_fraction / split_seed), not a fresh one
            tr_m, va_m = split_records(mosei, emo_cfg or self.cfg)
            te_m = []
        person = lambda r: r.youtube_id  # noqa: E731  (clips of one person stay on one side)
        tr_f, va_f = split_records(fiv2, per_cfg or self.cfg, key=person)
        vid = lambda r: r.video_id  # noqa: E731
        tr_m = _withhold_fitted(tr_m, [va_m, te_m], _fitted_keys(emo_cfg, EmotionDistTask, vid), vid, "MOSEI")
        tr_f = _withhold_fitted(tr_f, [va_f], _fitted_keys(per_cfg, PersonalityTask, person), person, "FIV2")
        self.train_records, self.val_records, self.test_records = tr_m + tr_f, va_m + va_f, te_m
        t = torch.tensor([r.distribution for r in tr_m]) if tr_m else None
        self.class_weights = inverse_frequency_weights(t) if t is not None else None

    def targets(self, record, frame_times):
        dist = getattr(record, "distribution", None)
        traits = getattr(record, "traits", None)
        return {
            "distribution": torch.tensor(dist if dist is not None else (0.0,) * 7, dtype=torch.float32),
            "has_emotion": torch.tensor(dist is not None),
            "traits": torch.tensor(traits if traits is not None else (0.0,) * 5, dtype=torch.float32),
            "has_traits": torch.tensor(traits is not None),
        }

    def make_backbone(self):
        from emovid.models.heads import SequenceTransformer
        from emovid.train import load_model_dir

        dim = self.cfg.model_args.get("dim")
        if dim is not None:  # rebuilding a saved fusion model: its file holds the heads' weights too
            self._heads = (SequenceTransformer(dim, 7), SequenceTransformer(dim, 5))
        else:
            emo, ecfg, _ = load_model_dir(self.cfg.emotion_checkpoint)
            per, _, _ = load_model_dir(self.cfg.personality_checkpoint)
            if emo.num_features != per.num_features:
                raise ConfigError("fusion: the emotion and personality heads were trained on different embeddings")
            self._heads = (emo.head, per.head)
            self.cfg.model_args["dim"] = int(emo.feature_extractor.num_features)
            self._record_recipe(self._root(), fallback=ecfg.model_args.get("face_embedder"))
        return super().make_backbone()

    def build_head(self, num_features: int) -> nn.Module:
        from emovid.models.heads import MultiTaskFusionModel

        return MultiTaskFusionModel(*self._heads)

    def training_loss(self, model, batch, cached):
        out = model(batch["video"], cached)
        t = batch["targets"]
        loss = out["traits"].sum() * 0.0
        he, ht = t["has_emotion"], t["has_traits"]
        if he.any():
            logp = torch.log_softmax(out["emotion_logits"][he], -1)
            loss = loss + balanced_kl_div(logp, t["distribution"][he], self.class_weights)
        if ht.any():
            loss = loss + F.mse_loss(out["traits"][ht], t["traits"][ht])
        return loss

    def predict(self, model, batch, cached):
        out = model(batch["video"], cached)
        t = batch["targets"]
        return {
            "index": batch["meta"]["index"],
            "prob": torch.softmax(out["emotion_logits"], -1),
            "target": t["distribution"],
            "has_emotion": t["has_emotion"].float(),
            "pred": out["traits"],
            "traits": t["traits"],
            "has_traits": t["has_traits"].float(),
        }

    def infer(self, model, x):
        out = model(x, True)
        p = torch.softmax(out["emotion_logits"], -1)
        return {
            **{c: p[:, k] for k, c in enumerate(MOSEI_CLASSES)},
            **{t: out["traits"][:, k] for k, t in enumerate(FIV2_TRAITS)},
        }

    def compute_metrics(self, outputs):
        out = {}
        e, tr = outputs["has_emotion"] > 0.5, outputs["has_traits"] > 0.5
        if e.any():
            out.update(
                EmotionDistTask.compute_metrics(self, {"prob": outputs["prob"][e], "target": outputs["target"][e]})
            )
        if tr.any():
            out.update(
                PersonalityTask.compute_metrics(self, {"pred": outputs["pred"][tr], "target": outputs["traits"][tr]})
            )
        out["score"] = out.get("top1", 0.0) + out.get("mean_acc", 0.0)
        return out


# ---- inference on new videos --------------------------------------------------------------------------------------


class FaceSequencePredictor:
    """``video path -> {output: value}`` from a trained face-sequence run (emotion_dist, personality, fusion).

    The video goes through the same steps as the training data: the checkpoint's recorded ``face_embedder`` recipe
    (face model and weights, number of crops, margin, detector; written by ``emovid faces embed`` and kept by
    training) gives the ``num_crops`` face crops and their embeddings, and the model maps the sequence to its task's
    named outputs (:meth:`Task.infer <emovid.tasks.base.Task.infer>`: MOSEI class probabilities, OCEAN scores in
    ``[0, 1]``, or both). A video without any face gives ``None``: nothing is invented.

    The work splits in two for batch engines: :meth:`crops` (decoding and face detection, CPU) and
    :meth:`embed_crops` + :meth:`outputs` (the face model and the head, on ``device``).

    Raises:
        ModelError: not a checkpoint, a task this predictor does not take, or a face model whose embedding size
            differs.
        ConfigError: the checkpoint does not record its face model and none is given.
    """

    tasks: tuple[str, ...] = ("emotion_dist", "personality", "fusion")

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        face_model: str | None = None,
        weights: str | bool | None = None,
    ):
        from emovid.errors import ModelError
        from emovid.faces.detect import create_detector
        from emovid.faces.embed import FaceEmbedder
        from emovid.train import load_model_dir

        self.checkpoint = str(checkpoint)
        self.model, self.cfg, self.task = load_model_dir(checkpoint)
        if self.cfg.task not in self.tasks:
            raise ModelError(self._wrong_task())
        recipe = dict(self.cfg.model_args.get("face_embedder") or {})
        if face_model:
            recipe.update(model=face_model, weights=weights if weights is not None else True)
        if "model" not in recipe:
            raise ConfigError(
                f"{checkpoint}: the checkpoint does not record which face model made its training embeddings "
                "(no faces_embed.json beside them); name it with face_model="
            )
        w = recipe.get("weights")
        self.recipe = recipe
        self.embedder = FaceEmbedder(recipe["model"], w if w not in (None, "None") else False, device)
        dim = int(self.cfg.model_args.get("dim", self.embedder.dim))
        if self.embedder.dim != dim:
            raise ModelError(
                f"{checkpoint}: trained on {dim}-d embeddings but {recipe['model']} gives {self.embedder.dim}-d"
            )
        self.num_crops = int(recipe.get("num_crops", 30))
        self.margin = float(recipe.get("margin", 0.2))
        self.detector = create_detector(recipe.get("detector", "haar"))
        self.model.to(device)
        self.device = device

    def _wrong_task(self) -> str:
        return (
            f"{self.checkpoint}: a {self.cfg.task!r} checkpoint is not a face-sequence model; give an emotion_dist, "
            "personality or fusion checkpoint"
        )

    def crops(self, path: str | Path):
        """The recipe's face crops of a video (:class:`~emovid.faces.crops.FaceCrops`; decoding and detection).

        Raises:
            emovid.errors.VideoError: the file cannot be decoded.
        """
        from emovid.faces.crops import video_face_crops

        return video_face_crops(
            path, num_crops=self.num_crops, size=self.embedder.size, margin=self.margin, detector=self.detector
        )

    def embed_crops(self, fc, batch_size: int = 32) -> torch.Tensor:
        """``[num_crops, D]`` embeddings of the real crops, zero rows after them: ``faces embed``'s ``emb``."""
        emb = np.zeros((self.num_crops, self.embedder.dim), np.float32)
        real = fc.face_crops()
        if len(real):
            emb[: len(real)] = self.embedder.embed(real, batch_size)
        return torch.from_numpy(emb)

    def outputs(self, emb: torch.Tensor) -> dict[str, float]:
        """The task's named outputs of one ``[N, D]`` embedding sequence (zero rows = no face)."""
        with torch.inference_mode():
            out = self.task.infer(self.model, emb.float().unsqueeze(0).to(self.device))
        return {k: float(v[0]) for k, v in out.items()}

    def __call__(self, path: str | Path) -> dict[str, float] | None:
        fc = self.crops(path)
        if fc.length == 0:
            return None
        return self.outputs(self.embed_crops(fc))


class FacePersonalityPredictor(FaceSequencePredictor):
    """``video path -> {trait: score}`` from a trained ``fusion`` (or ``personality``) checkpoint folder.

    :class:`FaceSequencePredictor` keeping the OCEAN scores only (:data:`emovid.data.readers.fiv2.FIV2_TRAITS`
    order, rounded to 5 decimals); ``None`` for a video without any face.

    Raises:
        ModelError: not a checkpoint, a task without traits, or a face model whose embedding size differs.
        ConfigError: the checkpoint does not record its face model and none is given.
    """

    tasks = ("fusion", "personality")

    def _wrong_task(self) -> str:
        return (
            f"{self.checkpoint}: a {self.cfg.task!r} checkpoint has no personality output; give a fusion or "
            "personality checkpoint"
        )

    def predict_embeddings(self, emb: torch.Tensor) -> dict[str, float]:
        """Traits from one ``[N, D]`` embedding sequence (zero rows = no face)."""
        out = self.outputs(emb)
        return {t: round(out[t], 5) for t in FIV2_TRAITS}

    def __call__(self, path: str | Path) -> dict[str, float] | None:
        fc = self.crops(path)
        if fc.length == 0:
            return None
        return self.predict_embeddings(self.embed_crops(fc))


def personality_predictor(checkpoint: str | Path, device: str = "cpu") -> FacePersonalityPredictor:
    """The ``emovid analyze --checkpoint`` hook (see :class:`FacePersonalityPredictor`)."""
    return FacePersonalityPredictor(checkpoint, device=device)
