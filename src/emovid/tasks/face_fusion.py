"""The ``fusion`` task: the EmoNeXt recipe's MultiTaskFusionModel over MOSEI emotions and FIV2 traits at once."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.readers.mosei import MOSEI_CLASSES
from emovid.errors import ConfigError, EmovidError
from emovid.losses import balanced_kl_div, inverse_frequency_weights
from emovid.tasks.base import register_task, split_records
from emovid.tasks.face_embedding import EmotionDistTask, PersonalityTask, _EmbeddingTask, official_split

log = logging.getLogger("emovid.tasks.face_sequence")  # the name these warnings had before the module split


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
class FusionTask(_EmbeddingTask):
    """``fusion``: the EmoNeXt recipe's MultiTaskFusionModel over both datasets at once.

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
        from emovid.engine.model_dir import load_model_dir
        from emovid.models.heads import SequenceTransformer

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
