"""The backbone ``emovid extract`` (and ``emovid predict``) embeds with, where its weights came from, its clips."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from emovid.errors import ConfigError, InputNotFoundError, ModelError

log = logging.getLogger("emovid.extract")

FRAME_MODEL_DEFAULT_FRAMES = 30  # the EmoNeXt recipe: 30 embeddings per video


# ---- the model --------------------------------------------------------------------------------------------------


@dataclass
class Extractor:
    """A backbone ready for export and where its weights came from.

    Attributes:
        backbone: module with ``forward_features`` and ``pretrained_cfg``.
        model_name: registry name of the backbone.
        checkpoint: the emovid checkpoint folder it was loaded from, if any.
        pretrained: the ``--pretrained`` source, if any.
        weights_sha256: first 16 hex digits of the SHA-256 of the weights file (``model.safetensors`` of a
            checkpoint, the pretrained file), else of the weights in memory (a module given directly, or a
            model name without ``pretrained``: random weights from a fixed seed, the same on every rank).
    """

    backbone: nn.Module
    model_name: str
    checkpoint: str | None = None
    pretrained: str | None = None
    weights_sha256: str | None = None

    @property
    def pretrained_cfg(self):
        return self.backbone.pretrained_cfg

    @property
    def num_features(self) -> int:
        return int(self.backbone.num_features)


def _file_sha256(paths: Sequence[Path]) -> str:
    from emovid.utils.io import file_sha256

    return file_sha256(*paths)[:16]


def _state_sha256(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _weight_files(folder: Path) -> list[Path]:
    from emovid.models.hub import STATE_DICT_FILES

    for name in STATE_DICT_FILES:
        if (folder / name).exists():
            return [folder / name]
    return sorted(folder.glob("model-*.safetensors"))


def load_extractor(
    checkpoint: str | os.PathLike | None = None,
    model: str | nn.Module | None = None,
    pretrained: str | None = None,
    allow_size_mismatch: bool = False,
) -> Extractor:
    """The backbone to export features from: an emovid checkpoint folder, a registered model, or a module.

    Args:
        checkpoint: emovid checkpoint folder (``model.safetensors`` + ``train_config.yaml``); its task model's
            ``feature_extractor`` is used.
        model: a registered model name (built with ``num_classes=0``), or a module with ``forward_features``,
            ``num_features`` and ``pretrained_cfg``.
        pretrained: weights for a model name (tag, file, ``local-dir:PATH``, hub id, URL).
        allow_size_mismatch: load what fits and skip the rest (a pretext front-end checkpoint into a model with a
            GRU, VAERR's ``--allow-size-mismatch``); skipped tensors are reported.

    Raises:
        ConfigError: neither or both of ``checkpoint`` and ``model``.
        InputNotFoundError: the checkpoint folder does not exist.
        ModelError: not a checkpoint folder, unknown model, weights that do not fit.
    """
    if (checkpoint is None) == (model is None):
        raise ConfigError("give either --checkpoint DIR (an emovid checkpoint folder) or --model NAME, not both")
    if checkpoint is not None:
        if pretrained:
            raise ConfigError("--pretrained goes with --model; a --checkpoint folder holds its own weights")
        from emovid.engine.model_dir import MODEL_FILE, load_model_dir

        ckpt = Path(checkpoint)
        if not ckpt.exists():
            raise InputNotFoundError(ckpt, "checkpoint folder")
        task_model, cfg, _ = load_model_dir(ckpt)
        backbone = task_model.feature_extractor
        name = getattr(backbone, "model_name", None) or cfg.model or type(backbone).__name__
        return Extractor(backbone.eval(), str(name), str(ckpt), None, _file_sha256([ckpt / MODEL_FILE]))
    if isinstance(model, nn.Module):
        for attr in ("forward_features", "num_features", "pretrained_cfg"):
            if not hasattr(model, attr):
                raise ModelError(f"{type(model).__name__} has no {attr}; give a registered backbone")
        name = getattr(model, "model_name", None) or type(model).__name__
        return Extractor(model.eval(), str(name), None, pretrained, _state_sha256(model))
    from emovid.models import create_model, default_weights

    given, pretrained = pretrained, default_weights(str(model), pretrained)  # unset: the model's default weights
    if pretrained:
        from emovid.models.hub import resolve

        backbone = create_model(
            str(model),
            pretrained=pretrained,
            num_classes=0,
            allow_size_mismatch=allow_size_mismatch,
            strict=not allow_size_mismatch,
        )
        res = resolve(pretrained, backbone.pretrained_cfg, str(model))
        files = [res.path] if res.kind == "file" else _weight_files(res.path)
        digest = _file_sha256(files) if files else _state_sha256(backbone)
        logging.getLogger("emovid.run").info("%s: weights %s (%s)", model, pretrained, res.path)  # the CLI shows it
        return Extractor(backbone.eval(), str(model), None, pretrained, digest)
    why = "--pretrained none" if given is not None else "it has no published weights"
    log.warning("%s: random init (%s); the features come from a randomly initialised model", model, why)
    # A fixed seed: every rank (and a resumed run) must build the same random weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = create_model(str(model), num_classes=0)
    return Extractor(backbone.eval(), str(model), None, None, _state_sha256(backbone))


# ---- clips ------------------------------------------------------------------------------------------------------


def default_clips(pretrained_cfg) -> str:
    """The default clip spec for a model: non-overlapping windows of its own clip geometry.

    Video models get ``sliding:TxS:SPAN`` (``T`` frames every ``S``, a new window every clip span, one padded
    clip for videos shorter than a span); single-frame (image/face) models get ``uniform:30`` frames, each its
    own clip.
    """
    from emovid.video.sampling import clip_span

    n, s = int(pretrained_cfg.num_frames), int(pretrained_cfg.frame_stride)
    if n == 1:
        return f"uniform:{FRAME_MODEL_DEFAULT_FRAMES}"
    return f"sliding:{n}x{s}:{clip_span(n, s)}"


class FramesAsClips:
    """Every frame a sampler chooses becomes a clip of one frame (for single-frame models)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __call__(self, num_frames: int, frame_times=None, rng=None) -> list[list[int]]:
        return [[i] for clip in self.sampler(num_frames, frame_times, rng=rng) for i in clip]

    def __str__(self) -> str:
        return f"{self.sampler}:frames"


def make_sampler(pretrained_cfg, clips: str | None = None):
    """The clip sampler for ``clips`` (a :func:`~emovid.video.sampling.parse_sampler` spec) or the default."""
    from emovid.video.sampling import parse_sampler

    sampler = parse_sampler(clips or default_clips(pretrained_cfg))
    if int(pretrained_cfg.num_frames) == 1:
        return FramesAsClips(sampler)
    if sampler.kind in ("sliding", "random", "center") and sampler.num_frames != pretrained_cfg.num_frames:
        log.warning(
            "--clips %s takes %d frames per clip; the model was trained on %d",
            clips,
            sampler.num_frames,
            pretrained_cfg.num_frames,
        )
    return sampler


__all__ = ["Extractor", "FramesAsClips", "default_clips", "load_extractor", "make_sampler"]
