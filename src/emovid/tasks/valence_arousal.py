"""``valence_arousal`` (seed 003, VAERR): continuous valence and arousal in [-1, 1] from video.

Labels: a SEWA-style CSV ``video,time,valence,arousal``. With a backbone that gives per-frame features
(``resnet18_3dstem_gru``: 3D-conv stem + ResNet-18 + GRU) the task is sequence regression: each sampled frame
gets the labels interpolated at its time. Other backbones regress the clip's mean valence/arousal.
``--clip-length`` sets the training clip in seconds (VAERR's ``--clip_length``), sampled at the model's
frame stride. Losses (``--loss``, VAERR's ``--loss_type``): ``mse``, ``ccc`` (1 − CCC), ``mse+ccc``, or ``bins``
(cross entropy over ``--va-bins`` equal bins of [-1, 1], decoded as the expected value). Metric: CCC per
dimension over all validation frames (torchmetrics), and their mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.errors import ConfigError
from emovid.losses import binned_cross_entropy, ccc_loss, expected_value
from emovid.tasks.base import Task, register_task, split_records


class VAHead(nn.Module):
    """Linear map to ``2`` values (``tanh``-bounded) or to ``2 x bins`` logits; works on ``[..., D]``."""

    def __init__(self, num_features: int, bins: int = 0):
        super().__init__()
        self.bins = bins
        self.fc = nn.Linear(num_features, 2 * bins if bins else 2)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        y = self.fc(e)
        if self.bins:
            return y.unflatten(-1, (2, self.bins))
        return torch.tanh(y)


@register_task
class ValenceArousalTask(Task):
    name = "valence_arousal"
    default_model = "resnet18_3dstem_gru"
    monitor = "val/ccc_mean"
    mode = "max"
    sequence = True
    losses = ("mse", "ccc", "mse+ccc", "bins")

    def load(self) -> None:
        from emovid.data.readers.sewa import read_va_csv

        if not self.cfg.data:
            raise ConfigError("valence_arousal: give the labels with --data FILE (video,time,valence,arousal)")
        records = read_va_csv(self.cfg.data, self.cfg.video_root)
        self.train_records, self.val_records = split_records(records, self.cfg)

    def targets(self, record, frame_times):
        v, a = record.at(frame_times)
        return {"va": torch.tensor(np.stack([v, a], -1), dtype=torch.float32)}  # [T, 2]

    def build_head(self, num_features: int) -> nn.Module:
        return VAHead(num_features, self.cfg.va_bins if self.loss_name == "bins" else 0)

    def _outputs(self, model, batch, cached):
        y = model(batch["video"], cached)  # [B, T, 2(, bins)] or [B, 2(, bins)]
        target = batch["targets"]["va"]  # [B, T, 2]
        per_frame = y.ndim == (4 if self.loss_name == "bins" else 3)
        if not per_frame:
            target = target.mean(1)
        return y, target

    def training_loss(self, model, batch, cached):
        y, t = self._outputs(model, batch, cached)
        if self.loss_name == "bins":
            return binned_cross_entropy(y, t)
        flat_y, flat_t = y.reshape(-1, 2), t.reshape(-1, 2)
        if self.loss_name == "mse":
            return F.mse_loss(flat_y, flat_t)
        if self.loss_name == "ccc":
            return ccc_loss(flat_y, flat_t)
        return F.mse_loss(flat_y, flat_t) + ccc_loss(flat_y, flat_t)

    def predict(self, model, batch, cached):
        y, t = self._outputs(model, batch, cached)
        if self.loss_name == "bins":
            y = expected_value(y)
        return {"index": batch["meta"]["index"], "pred": y, "target": t}

    def compute_metrics(self, outputs):
        from torchmetrics.functional import concordance_corrcoef

        p = torch.as_tensor(outputs["pred"]).reshape(-1, 2).double()
        t = torch.as_tensor(outputs["target"]).reshape(-1, 2).double()
        c = concordance_corrcoef(p, t)
        return {
            "ccc_valence": float(c[0]),
            "ccc_arousal": float(c[1]),
            "ccc_mean": float(c.mean()),
            "mse": float(F.mse_loss(p, t)),
        }

    def clip_frames(self, fps: float, stride: int) -> int | None:
        """Frames per training clip for ``--clip-length`` seconds at ``fps`` with ``stride``."""
        if not self.cfg.clip_length:
            return None
        return max(2, int(round(self.cfg.clip_length * fps / stride)))
