"""Inference on new videos with a trained face-sequence run (``emotion_dist``, ``personality``, ``fusion``).

The video's faces are cropped and embedded with the run's recorded ``face_embedder`` recipe, as its training
embeddings were, and the trained model maps the sequence to its task's named outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.errors import ConfigError


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
        from emovid.engine.model_dir import load_model_dir
        from emovid.errors import ModelError
        from emovid.faces.detect import create_detector
        from emovid.faces.embed import FaceEmbedder

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
