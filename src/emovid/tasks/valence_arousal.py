"""``valence_arousal`` (VAERR): continuous valence and arousal in [-1, 1] from video.

Labels: a SEWA-style CSV ``video,time,valence,arousal``. With a backbone that gives per-frame features
(``resnet18_3dstem_gru``: 3D-conv stem + ResNet-18 + GRU) the task is sequence regression: each sampled frame
gets the labels interpolated at its time. Other backbones regress the clip's mean valence/arousal.
``--clip-length`` sets the clip in seconds (VAERR's ``--clip_length``), sampled at the model's frame stride;
each video gets that duration at its own frame rate, so one batch may mix clip lengths (padded, and the padding
masked out of loss and metrics).

Losses (``--loss NAME`` or VAERR's ``--loss_type N``): VAERR's ten, numbered and named as VAERR has them
(:mod:`emovid.losses_vaerr`: ``1 mse``, ``2 ccc``, ``3 ce``, ``4 bce``, ``5 ccc+ce``, ``6 ccc+ce+mse``,
``7 arousal:ccc+ce``, ``8 arousal:ccc+ce+mse``, ``9 ccc+ncce``, ``10 ccc+ncce+mse``), and emovid's own ``mse+ccc``
and ``bins`` (cross entropy over ``--bins`` equal bins of [-1, 1], decoded as the expected value). Losses 3-10 use
VAERR's head (:class:`VAERRHead`: per dimension, arousal first, ``bins`` softmax probabilities and the value
``sigmoid * 2 - 1``; targets one-hot bin + value); 1, 2 and ``mse+ccc`` a ``tanh`` head of the two values
(``tanh(x) = 2 sigmoid(2x) - 1``: VAERR's value output).

VAERR's other flags: ``--fine-tuning FT | Frozen3DConv | FullyFrozen`` (train all; freeze the 3D-conv stem;
freeze stem and ResNet trunk, training the GRU and head), ``--every-frame`` (a prediction per frame, VAERR's
only working mode; ``--last-frame`` predicts each clip from its last frame), ``--segments_per_file N`` (with
``--clip_length`` > 0, every training video gives N random clips per epoch; VAERR's default 3), ``--clip_length 0``
(whole videos), ``--dataset sewa_video | MSP_video | RECOLA`` (VAERR's names: the label reader; all three read the
SEWA-style CSV below, ``va_csv`` is its own name).

Metric: CCC per dimension over all frames of all validation videos (torchmetrics), and their mean, as SEWA/AVEC
score it. Validation slides clips over each whole video (:func:`~emovid.video.sampling.covering_clips`: the
last one aligned to the end) and scores every frame exactly once; ``frames`` reports how many. A clip-level
backbone's prediction stands for each frame of its clip. An explicit ``--eval-sampler`` (or ``--cache-features``,
whose cache holds one clip per video) scores only the frames of that clip.
"""

from __future__ import annotations

import functools
import inspect
import logging

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.data.datasets import ClipDataset, ClipLoader, WindowDataset, collate_pad_time
from emovid.errors import ConfigError
from emovid.losses import binned_cross_entropy, ccc_loss, expected_value
from emovid.losses_vaerr import (
    BINNED_LOSSES,
    VAERR_LOSS_NAMES,
    KMeansState,
    vaerr_ccc_loss,
    vaerr_loss,
    vaerr_loss_name,
    vaerr_targets,
)
from emovid.tasks.base import Task, register_task, split_records
from emovid.video.sampling import covering_clips, frames_for_seconds

log = logging.getLogger(__name__)


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


class VAERRHead(nn.Module):
    """VAERR's output layer (``model/modelVideoClassReg.py``): ``Linear(D, 2 * (bins + 1))`` split per dimension
    (arousal, then valence) into ``bins`` softmax probabilities and a value ``sigmoid * 2 - 1``; ``[..., 2, bins+1]``.

    The weight starts as VAERR's ``_initialize_weights_randomly``: ``N(0, sqrt(2 / D))``.
    """

    def __init__(self, num_features: int, bins: int = 20):
        super().__init__()
        self.bins = bins
        self.fc = nn.Linear(num_features, 2 * (bins + 1))
        nn.init.normal_(self.fc.weight, 0.0, (2.0 / num_features) ** 0.5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        y = self.fc(e).unflatten(-1, (2, self.bins + 1))
        return torch.cat([torch.softmax(y[..., : self.bins], -1), torch.sigmoid(y[..., self.bins :]) * 2 - 1], -1)


#: VAERR's ``--dataset`` choices and emovid's own name; each reads the SEWA-style CSV (see the module docstring).
DATASETS = ("sewa_video", "MSP_video", "RECOLA", "va_csv")
#: VAERR's ``--fine-tuning`` choices: which parts of the backbone stay frozen.
FINE_TUNING = {"FT": (), "Frozen3DConv": ("frontend3D",), "FullyFrozen": ("frontend3D", "trunk")}


def _takes_lengths(fn) -> bool:
    try:
        return "lengths" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@register_task
class ValenceArousalTask(Task):
    name = "valence_arousal"
    default_model = "resnet18_3dstem_gru"
    monitor = "val/ccc_mean"
    mode = "max"
    sequence = True
    losses = (*VAERR_LOSS_NAMES.values(), "mse+ccc", "bins")
    outputs = ("valence", "arousal")  # in [-1, 1], per frame
    takes_clip_length = True  # --clip-length seconds (VAERR's --clip_length; 0: whole videos)

    def __init__(self, cfg):
        if cfg.loss is not None:
            cfg.loss = vaerr_loss_name(cfg.loss)  # VAERR's --loss_type 5 is ccc+ce
        super().__init__(cfg)
        if cfg.dataset not in DATASETS:
            raise ConfigError(
                f"valence_arousal: unknown --dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}"
            )
        if cfg.fine_tuning not in FINE_TUNING:
            raise ConfigError(
                f"valence_arousal: unknown --fine-tuning {cfg.fine_tuning!r}; choose one of {', '.join(FINE_TUNING)}"
            )
        if cfg.segments_per_file < 1:
            raise ConfigError(f"valence_arousal: --segments_per_file must be at least 1, got {cfg.segments_per_file}")
        self.kmeans_state = KMeansState()  # losses 9, 10: centres carried from batch to batch, as in VAERR

    @property
    def vaerr_head(self) -> bool:
        return self.loss_name in BINNED_LOSSES

    @property
    def _binned_output(self) -> bool:
        """The head's output has a bins axis (``[..., 2, bins(+1)]``)."""
        return self.vaerr_head or self.loss_name == "bins"

    def load(self) -> None:
        from emovid.data.readers.sewa import read_va_csv

        if not self.cfg.data:
            raise ConfigError("valence_arousal: give the labels with --data FILE (video,time,valence,arousal)")
        records = read_va_csv(self.cfg.data, self.cfg.video_root)
        self.train_records, self.val_records = split_records(records, self.cfg)

    def targets(self, record, frame_times):
        v, a = record.at(frame_times)
        return {"va": torch.tensor(np.stack([v, a], -1), dtype=torch.float32)}  # [T, 2]

    # ---- data ---------------------------------------------------------------------------------------------------

    def train_dataset(self, loader, epoch):
        # VAERR's --segments_per_file: with --clip_length > 0, each training video gives that many random clips
        repeat = self.cfg.segments_per_file if self.cfg.clip_length else 1
        ds = ClipDataset(self.train_records * repeat, loader, self.targets, seed=self.cfg.seed, epoch=epoch)
        # cached features are [T, D]; clips [C, T, H, W]
        ds.collate_fn = functools.partial(collate_pad_time, time_dim=1 if isinstance(loader, ClipLoader) else 0)
        return ds

    def val_dataset(self, loader):
        if not isinstance(loader, ClipLoader) or self.cfg.eval_sampler:
            if not isinstance(loader, ClipLoader):
                log.warning("valence_arousal: the feature cache holds one clip per video; only its frames are scored")
            ds = ClipDataset(self.val_records, loader, self.targets, seed=self.cfg.seed, epoch=0)
            ds.collate_fn = functools.partial(collate_pad_time, time_dim=1 if isinstance(loader, ClipLoader) else 0)
            return ds
        sampler = loader.sampler

        def windows(num_frames: int, frame_times: np.ndarray):
            return covering_clips(num_frames, sampler.clip_frames(frame_times), sampler.stride)

        ds = WindowDataset(self.val_records, loader, self.targets, windows)
        # One padded length for the whole set: per-batch outputs are concatenated (and gathered across ranks).
        ds.collate_fn = functools.partial(collate_pad_time, length=ds.max_len, time_dim=1)
        return ds

    # ---- model and steps ----------------------------------------------------------------------------------------

    def build_head(self, num_features: int) -> nn.Module:
        if self.vaerr_head:
            return VAERRHead(num_features, self.cfg.va_bins)
        return VAHead(num_features, self.cfg.va_bins if self.loss_name == "bins" else 0)

    def build_model(self, backbone: nn.Module):
        frozen = FINE_TUNING[self.cfg.fine_tuning]
        for part in frozen:
            module = getattr(backbone, part, None)
            if module is None:
                raise ConfigError(
                    f"--fine-tuning {self.cfg.fine_tuning}: backbone {type(backbone).__name__} has no {part!r} "
                    "(VAERR's 3D-conv front-end); use --fine-tuning FT or a resnet18_3dstem model"
                )
            module.requires_grad_(False)  # as VAERR: no gradient; BatchNorm statistics still follow the data
        return super().build_model(backbone)

    def _forward(self, model, batch, cached) -> tuple[torch.Tensor, bool, torch.Tensor]:
        """Model output ``[B, T, 2(, bins)]`` or ``[B, 2(, bins)]``, whether it is per frame, and the ``[B, T]``
        mask of real (not padded) frames."""
        x = batch["video"]
        target = batch["targets"]["va"]
        valid = batch["meta"].get("valid")
        valid = torch.ones(target.shape[:2], dtype=torch.bool, device=target.device) if valid is None else valid.bool()
        fe = model.feature_extractor
        if not cached and model.sequence and not bool(valid.all()) and _takes_lengths(fe.forward_sequence):
            y = model.head(fe.forward_sequence(x, valid.sum(1).cpu()))  # padding kept out of the recurrence
        else:
            y = model(x, cached)
        per_frame = y.ndim == (4 if self._binned_output else 3)
        if per_frame and not self.cfg.every_frame:  # --last-frame: the clip's prediction is its last frame's
            last = (valid.sum(1) - 1).clamp_min(0)
            y = y[torch.arange(len(y), device=y.device), last]
            per_frame = False
        return y, per_frame, valid

    def _clip_target(self, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The target of a clip-level prediction: the last real frame's (``--last-frame``) or the clip's mean."""
        if not self.cfg.every_frame:
            last = (valid.sum(1) - 1).clamp_min(0)
            return t[torch.arange(len(t), device=t.device), last]
        w = valid.to(t.dtype)[..., None]
        return (t * w).sum(1) / w.sum(1).clamp_min(1)

    def _values(self, y: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` (valence, arousal) values of a head output."""
        if self.vaerr_head:
            return y[..., [1, 0], self.cfg.va_bins]
        if self.loss_name == "bins":
            return expected_value(y)
        return y

    def training_loss(self, model, batch, cached):
        y, per_frame, valid = self._forward(model, batch, cached)
        t = batch["targets"]["va"]
        if per_frame:
            y, t = y[valid], t[valid]  # [N frames, 2(, bins)]
        else:
            t = self._clip_target(t, valid)
        if self.vaerr_head:
            target = vaerr_targets(t, self.cfg.va_bins)
            return vaerr_loss(self.loss_name, y, target, self.kmeans_state, model.parameters())
        if self.loss_name == "bins":
            return binned_cross_entropy(y, t)
        flat_y, flat_t = y.reshape(-1, 2), t.reshape(-1, 2)
        if self.loss_name == "mse":  # VAERR's loss 1: MSE over both values
            return F.mse_loss(flat_y, flat_t)
        if self.loss_name == "ccc":  # VAERR's loss 2: its CCC loss per dimension, summed
            return vaerr_ccc_loss(flat_y[:, 0], flat_t[:, 0]) + vaerr_ccc_loss(flat_y[:, 1], flat_t[:, 1])
        return F.mse_loss(flat_y, flat_t) + ccc_loss(flat_y, flat_t)

    def predict(self, model, batch, cached):
        y, per_frame, valid = self._forward(model, batch, cached)
        y = self._values(y)
        t = batch["targets"]["va"]
        if not per_frame:  # a clip-level prediction stands for every frame of its clip
            y = y[:, None, :].expand_as(t)
        meta = batch["meta"]
        keep = meta["keep"].bool() & valid if "keep" in meta else valid
        return {"index": meta["index"], "pred": y, "target": t, "keep": keep.float()}

    def infer(self, model, x):
        y = model(x)  # whole clips of one length: no padding, so no lengths (as _forward without padding)
        per_frame = y.ndim == (4 if self._binned_output else 3)
        if per_frame and not self.cfg.every_frame:
            y, per_frame = y[:, -1], False
        y = self._values(y)
        if not per_frame:  # a clip-level prediction stands for every frame of its clip, as in validation
            y = y[:, None, :].expand(-1, x.shape[2], -1)
        return {"valence": y[..., 0], "arousal": y[..., 1]}

    def compute_metrics(self, outputs):
        from torchmetrics.functional import concordance_corrcoef

        p = torch.as_tensor(outputs["pred"]).reshape(-1, 2).double()
        t = torch.as_tensor(outputs["target"]).reshape(-1, 2).double()
        if "keep" in outputs:  # scored frames only: no padding, no frame twice
            keep = torch.as_tensor(outputs["keep"]).reshape(-1) > 0.5
            p, t = p[keep], t[keep]
        # A constant prediction of a dimension has CCC 0 (Lin), where torchmetrics gives NaN: ccc_mean, the monitored
        # metric, would then be NaN and dropped by the logger.
        c = torch.nan_to_num(torch.atleast_1d(concordance_corrcoef(p, t)), nan=0.0)
        return {
            "ccc_valence": float(c[0]),
            "ccc_arousal": float(c[1]),
            "ccc_mean": float(c.mean()),
            "mse": float(F.mse_loss(p, t)),
            "frames": float(len(p)),
        }

    def clip_frames(self, fps: float, stride: int) -> int | None:
        """Frames per clip for ``--clip-length`` seconds at ``fps`` with ``stride`` (each video's own fps)."""
        if not self.cfg.clip_length:
            return None
        return frames_for_seconds(self.cfg.clip_length, fps, stride)
