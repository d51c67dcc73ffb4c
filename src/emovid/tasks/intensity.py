"""``intensity`` (RankNet-X3D): RankNet on video pairs so the embedding tracks emotional intensity.

Labels: an intensity CSV (``video_path,intensity_score``). Pairs ``(A, B)`` get ``t = 1`` if A is more intense,
``0`` if B is, ``0.5`` on ties (within ``--tie-tol``); the loss is ``BCEWithLogits(s_A - s_B, t)``.

Pair strategies (``--pairs``): ``batch`` (default) draws shuffled batches of videos and uses every pair inside
each batch, so each video is decoded once per epoch and a batch of B videos gives B(B-1)/2 pairs; ``random``
(k partners per video, re-drawn each epoch) and ``all`` build explicit pair lists like the original script and
decode both videos of every pair.

:class:`IntensityScorer` is RankNet-X3D's model: ``feature_extractor`` (the backbone's penultimate features) plus a
scalar score. ``--score linear`` is the original learned linear score; ``--score norm`` makes the score the
embedding's L2 norm itself, so ranking directly orders the magnitudes (the original stated goal: "a more intense
expression results in a feature vector with a larger magnitude"). Validation reports pairwise accuracy over all
validation pairs and the Spearman correlation between ``||embedding||`` and intensity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torchmetrics.functional import spearman_corrcoef

from emovid.data.datasets import PairDataset
from emovid.data.pairs import PairSampler, all_pairs, pair_targets_array
from emovid.errors import ConfigError
from emovid.losses import pairwise_accuracy, ranknet_loss
from emovid.tasks.base import Task, TaskModel, register_task, split_records


class NormScore(nn.Module):
    """Score = ``scale * ||e||_2 + bias`` (a learnable affine map of the embedding norm keeps logits in range)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.scale.abs() * e.norm(dim=-1) + self.bias


class LinearScore(nn.Module):
    def __init__(self, num_features: int):
        super().__init__()
        self.fc = nn.Linear(num_features, 1)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.fc(e).squeeze(-1)


class IntensityScorer(TaskModel):
    """RankNet-X3D's model: ``feature_extractor`` + scalar score head."""

    def score(self, x: torch.Tensor, cached: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.features(x, cached)
        return self.head(e), e


@register_task
class IntensityTask(Task):
    name = "intensity"
    default_model = "x3d_s"
    monitor = "val/pair_acc"
    mode = "max"
    sample_kind = "pair"
    # the trained score head's output s, and ||embedding|| (what --score norm ranks by)
    outputs = ("intensity", "embedding_norm")

    def load(self) -> None:
        from emovid.data.readers.intensity_csv import read_intensity_csv

        if not self.cfg.data:
            raise ConfigError("intensity: give the labels with --data-csv FILE (video_path,intensity_score)")
        records = read_intensity_csv(self.cfg.data, self.cfg.video_root)
        if len(records) < 4:
            raise ConfigError(f"{self.cfg.data}: intensity needs at least 4 videos, found {len(records)}")
        self.train_records, self.val_records = split_records(records, self.cfg)

    def targets(self, record, frame_times):
        return {"intensity": torch.tensor(float(record.intensity))}

    def build_head(self, num_features: int) -> nn.Module:
        if self.cfg.score == "norm":
            return NormScore()
        if self.cfg.score == "linear":
            return LinearScore(num_features)
        raise ConfigError(f"intensity: --score must be linear or norm, got {self.cfg.score!r}")

    def build_model(self, backbone: nn.Module) -> IntensityScorer:
        return IntensityScorer(backbone, self.build_head(int(backbone.num_features)))

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.pairs not in ("batch", "random", "all"):
            raise ConfigError(f"intensity: --pairs must be batch, random or all, got {cfg.pairs!r}")
        self.sample_kind = "clip" if cfg.pairs == "batch" else "pair"

    def train_dataset(self, loader, epoch):
        base = super().train_dataset(loader, epoch)
        if self.cfg.pairs == "batch":
            return base
        scores = [r.intensity for r in self.train_records]
        sampler = PairSampler(
            scores, self.cfg.pairs, k=self.cfg.pairs_per_video, seed=self.cfg.seed, tie_tol=self.cfg.tie_tol
        )
        return PairDataset(base, sampler.pairs)

    def batch_pairs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every pair ``i < j`` of a batch of videos: indices into the batch and their RankNet targets.

        The targets come from the records' scores as read (float64), by the rule the pair sampler and validation
        use (:func:`~emovid.data.pairs.pair_targets_array`): the batch's float32 copies would round 1.1 - 1.0 to
        just above 0.1 and train a ``--tie-tol 0.1`` tie as decided.
        """
        idx = torch.as_tensor(batch["meta"]["index"]).cpu().tolist()
        y = np.array([float(self.train_records[i].intensity) for i in idx])
        a, b = torch.triu_indices(len(y), len(y), offset=1)
        t = torch.from_numpy(pair_targets_array(y[a.numpy()], y[b.numpy()], self.cfg.tie_tol)).float()
        return a, b, t

    def training_loss(self, model: IntensityScorer, batch: dict, cached: bool) -> torch.Tensor:
        if "video" in batch:  # in-batch pairs: every i < j
            s, _ = model.score(batch["video"], cached)
            a, b, t = self.batch_pairs(batch)
            return ranknet_loss(s[a.to(s.device)], s[b.to(s.device)], t.to(s.device))
        n = len(batch["target"])
        s, _ = model.score(torch.cat([batch["video_a"], batch["video_b"]]), cached)
        return ranknet_loss(s[:n], s[n:], batch["target"])

    def predict(self, model: IntensityScorer, batch: dict, cached: bool) -> dict[str, torch.Tensor]:
        s, e = model.score(batch["video"], cached)
        return {"index": batch["meta"]["index"], "score": s, "norm": e.norm(dim=-1)}

    def infer(self, model: IntensityScorer, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s, e = model.score(x)
        return {"intensity": s, "embedding_norm": e.norm(dim=-1)}

    def compute_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        recs = [self.val_records[i] for i in outputs["index"]]
        y = np.array([r.intensity for r in recs])
        pairs = all_pairs(y, self.cfg.tie_tol, include_ties=False)
        s = torch.as_tensor(outputs["score"], dtype=torch.float64)
        norm = torch.as_tensor(outputs["norm"], dtype=torch.float64)
        out = {"n_videos": float(len(recs))}
        if pairs:
            a = torch.tensor([p.a for p in pairs])
            b = torch.tensor([p.b for p in pairs])
            t = torch.tensor([p.target for p in pairs])
            out["pair_acc"] = float(pairwise_accuracy(s[a], s[b], t))
            out["norm_pair_acc"] = float(pairwise_accuracy(norm[a], norm[b], t))
        if len(recs) > 2 and np.ptp(y) > 0:
            yt = torch.as_tensor(y)
            # constant scores (a collapsed model) have no rank correlation: 0, not a NaN the logger would drop
            out["spearman_norm"] = float(torch.nan_to_num(spearman_corrcoef(norm, yt), nan=0.0))
            out["spearman_score"] = float(torch.nan_to_num(spearman_corrcoef(s, yt), nan=0.0))
        return out
