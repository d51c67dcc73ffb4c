"""Face-sequence predictors (emotion_dist, personality, fusion): faces embedded with the run's recorded recipe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from emovid.errors import ConfigError
from emovid.predict import Predictor


class FacePredictor(Predictor):
    """emotion_dist, personality and fusion: face crops embedded with the run's recorded recipe, then the head.

    An input ending in ``.pt`` is taken as an embedding file written by ``emovid faces embed`` (no decoding).
    """

    def __init__(self, run: Path, device: str, batch_size: int):
        from emovid.tasks.face_sequence import FaceSequencePredictor

        self.faces = FaceSequencePredictor(run, device=device)
        self.task = self.faces.cfg.task
        super().__init__(run, device, batch_size)
        self.clips_spec = f"faces:{self.faces.num_crops}"

    @property
    def info(self) -> dict[str, Any]:
        r = self.faces.recipe
        face = {k: r.get(k) for k in ("model", "weights", "num_crops", "margin", "detector")}
        return {**super().info, "model": "embeddings", "face_embedder": face, "clips": self.clips_spec}

    def describe(self) -> str:
        r, i = self.faces.recipe, self.info
        return (
            f"{self.task} run {self.run}: face model {r['model']} (weights {r.get('weights')}), "
            f"{self.faces.num_crops} crops, {r.get('detector', 'haar')} detector; head weights model.safetensors "
            f"(sha256 {i['weights_sha256']}) on {self.device}"
        )

    def decode(self, path: str | os.PathLike) -> dict:
        if os.fsdecode(path).lower().endswith(".pt"):
            return self._embedding_file(Path(os.fsdecode(path)))
        fc = self.faces.crops(path)
        return {"video": os.fsdecode(path), "crops": fc, "length": fc.length, "damage": fc.damage}

    def _embedding_file(self, path: Path) -> dict:
        from emovid.models.hub import load_checkpoint
        from emovid.utils.paths import check_regular_file

        check_regular_file(path, "embedding file")
        d = load_checkpoint(path)
        emb = d.get("emb") if isinstance(d, dict) else d
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[1] != self.faces.embedder.dim:
            raise ConfigError(
                f"not a `faces embed` file with {self.faces.embedder.dim}-d embeddings [N, D] for this run", path
            )
        meta = d if isinstance(d, dict) else {}
        length = int(meta.get("length", len(emb)))
        return {"video": os.fsdecode(path), "emb": emb.float(), "length": length, "damage": meta.get("damaged")}

    def score(self, decoded: dict, timeline: bool = False) -> dict:
        n = int(decoded["length"])
        if n == 0:  # no face anywhere: no outputs are invented
            values: dict[str, Any] = {k: None for k in self._task_outputs()}
        else:
            emb = decoded.get("emb")
            if emb is None:
                emb = self.faces.embed_crops(decoded["crops"], self.batch_size)
            values = self.faces.outputs(emb)
        values["faces"] = n
        return self._finish(decoded["video"], values, None, decoded.get("damage"))

    def _task_outputs(self) -> list[str]:
        return [c for c in self.outputs if c != "faces"]
