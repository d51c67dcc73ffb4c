"""``vce`` (Emodiversity): the 27 emotion intensities of the Video Cognitive Empathy dataset.

Labels: a VCE folder (``train_labels.json``, ``test_labels.json``, ``metadata.json``, ``videos/``). Training
uses ``train`` minus a held-out validation share (``--val-fraction``) that picks the best checkpoint; the final
model is then scored on ``test``. Loss: ``bce`` (binary cross entropy on the [0, 1] intensities, the default)
or ``mse`` (on sigmoid outputs). Metrics: top-1-in-top-3 accuracy (the predicted strongest emotion is among
the labelled top 3), top-3 overlap (|predicted top 3 ∩ labelled top 3| / 3), mean per-emotion Pearson
correlation and MSE. Chance for top-1-in-top-3 is 3/27. Next to them, the Emodiversity fork's own metric
(``engine_for_finetuning.py``, timm's ``accuracy`` against the top-rated emotion): ``acc1`` (the highest logit is
the top-rated emotion) and ``acc3`` (the top-rated emotion is among the 3 highest logits), in percent as the
fork prints them; ``--monitor val/acc1`` keeps the best checkpoint by it, as the fork does. With ``--test-views
2x3`` the test split is scored on 2 temporal segments x 3 spatial crops, logits averaged per video
(:mod:`emovid.train.views`).

The head is ``Linear(D, 27)`` (``trunc_normal(std=0.02)``, bias 0) after dropout 0.1; ``--head-dropout`` changes the
dropout (the fork's ``--drop`` is 0), ``--head-init-scale 0.001`` multiplies the initial weights (the fork's
``--init_scale``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.data.readers.vce import VCE_EMOTIONS
from emovid.errors import ConfigError
from emovid.tasks.base import Task, register_task, split_records

NUM_EMOTIONS = len(VCE_EMOTIONS)  # 27


def top3_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Top-1-in-top-3 accuracy and top-3 overlap of ``[N, 27]`` predictions against ``[N, 27]`` intensities."""
    pred_top3 = np.argsort(-pred, axis=1, kind="stable")[:, :3]
    true_top3 = np.argsort(-target, axis=1, kind="stable")[:, :3]
    top1_in = np.mean([pred_top3[i, 0] in true_top3[i] for i in range(len(pred))])
    overlap = np.mean([len(set(pred_top3[i]) & set(true_top3[i])) / 3 for i in range(len(pred))])
    return {"top1_in_top3": float(top1_in), "top3_overlap": float(overlap)}


def top_rated_accuracy(logits: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The fork's Acc@1 / Acc@3 (percent): is the top-rated emotion (``argmax`` of the intensities; first on ties)
    the highest of the ``[N, 27]`` outputs, or among the 3 highest (ties broken by index)."""
    label = np.argmax(target, axis=1)
    order = np.argsort(-logits, axis=1, kind="stable")
    acc1 = np.mean(order[:, 0] == label)
    acc3 = np.mean([label[i] in order[i, :3] for i in range(len(label))])
    return {"acc1": float(100 * acc1), "acc3": float(100 * acc3)}


def mean_pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation per emotion (torchmetrics), averaged over emotions whose labels vary.

    An emotion predicted as a constant scores 0 (no linear relation), not NaN: leaving it out of the mean would
    reward a model that gave up on it.
    """
    from torchmetrics.functional import pearson_corrcoef

    keep = target.std(0) > 0
    if keep.sum() == 0 or len(pred) < 3:
        return float("nan")
    r = pearson_corrcoef(torch.as_tensor(pred[:, keep]), torch.as_tensor(target[:, keep]))
    return float(torch.nan_to_num(torch.atleast_1d(r), nan=0.0).mean())


@register_task
class VCETask(Task):
    name = "vce"
    default_model = "videomae_base_patch16_224"
    monitor = "val/top3_overlap"
    mode = "max"
    losses = ("bce", "mse")
    outputs = VCE_EMOTIONS  # sigmoid intensities in [0, 1], as trained (bce) and scored (mse)
    derived_outputs = ("top3",)

    def load(self) -> None:
        from emovid.data.readers.vce import read_vce

        if not self.cfg.data:
            raise ConfigError("vce: give the dataset folder with --data DIR (train_labels.json, videos/)")
        train = read_vce(self.cfg.data, "train")
        self.train_records, self.val_records = split_records(train, self.cfg)
        from pathlib import Path

        test_file = Path(self.cfg.data) / "test_labels.json"
        self.test_records = read_vce(self.cfg.data, "test") if test_file.exists() else []

    def targets(self, record, frame_times):
        return {"emotions": torch.tensor(record.emotions, dtype=torch.float32)}

    def build_head(self, num_features: int) -> nn.Module:
        drop = 0.1 if self.cfg.head_dropout is None else self.cfg.head_dropout
        fc = nn.Linear(num_features, NUM_EMOTIONS)
        if self.cfg.head_init_scale is not None:  # the fork's head init: trunc_normal(0.02), bias 0, times init_scale
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
            with torch.no_grad():
                fc.weight.mul_(self.cfg.head_init_scale)
        return nn.Sequential(nn.Dropout(drop), fc)

    def training_loss(self, model, batch, cached):
        logits = model(batch["video"], cached)
        y = batch["targets"]["emotions"]
        if self.loss_name == "mse":
            return F.mse_loss(torch.sigmoid(logits), y)
        return F.binary_cross_entropy_with_logits(logits, y)

    def predict(self, model, batch, cached):
        logits = model(batch["video"], cached)
        return {
            "index": batch["meta"]["index"],
            "pred": torch.sigmoid(logits),
            "logit": logits,
            "target": batch["targets"]["emotions"],
        }

    def infer(self, model, x):
        p = torch.sigmoid(model(x))
        return {name: p[:, k] for k, name in enumerate(VCE_EMOTIONS)}

    def derive(self, values):
        # the metric's ranking (top3_metrics): most intense first, ties in the dataset's order
        order = np.argsort(-np.array([values[n] for n in VCE_EMOTIONS]), kind="stable")[:3]
        return {"top3": ";".join(VCE_EMOTIONS[k] for k in order)}

    def compute_metrics(self, outputs):
        pred, target = outputs["pred"], outputs["target"]
        out = top3_metrics(pred, target)
        out.update(top_rated_accuracy(outputs.get("logit", pred), target))
        out["pearson"] = mean_pearson(pred, target)
        out["mse"] = float(np.mean((pred - target) ** 2))
        out["chance_top1_in_top3"] = 3 / NUM_EMOTIONS
        return out
