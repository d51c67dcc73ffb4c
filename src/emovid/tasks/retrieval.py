"""``retrieval``: text–video retrieval with CLIP-ViP video embeddings and an emotion-aware text encoder.

Labels: emotion caption JSON (a list of ``{"video", "video_id", "caption", ..., "joy", ..., "anger"}``
records) or MSR-VTT-style captions (``.csv`` ``video_id,sentence`` or the ``{"videos", "sentences"}`` JSON; these
carry no emotions, so the emotion term is zero). One sample per caption; the split is by video.

Model: the backbone (default ``clip_vip_base_patch32``) embeds the clip; the head
(:class:`~emovid.retrieval.model.RetrievalHead`) holds the CLIP text transformer with the original emotion embedding
(:class:`~emovid.retrieval.model.EmotionTextEncoder`) and the learnable temperature. Loss: symmetric InfoNCE
(:func:`emovid.losses.info_nce`) between the L2-normalised video and caption embeddings of a batch; two captions
of one video in a batch are masked out of each other's negatives (``groups``).

Validation: text→video and video→text R@1/5/10, median and mean rank over the validation videos, computed twice
— with each caption's emotion vector and with an all-zero one (no emotion term) — reported side by side
(``*_noemo`` keys). A video with several captions counts as retrieved (v2t) at its best-ranked caption. Ties are
broken pessimistically (:func:`retrieval_ranks`): a gallery item scoring the same as the positive ranks ahead
of it, so a collapsed model (all similarities equal) scores R@1 = 0 and median rank = gallery size, not a perfect
rsum.

Task options (``extra:`` in a ``--config`` recipe):

* ``emotion``: ``add`` (the original recipe, default) | ``concat`` | ``xattn`` (the original future-work variants: an
  emotion-conditioned linear layer; a separate emotion encoder cross-attending with text and video) | ``none``;
* ``video_emotion``: ``none`` (default) | ``head``: emotion read from the video itself — a head on the video
  features predicts the 8 Plutchik emotions (binary cross-entropy against the caption's binarised emotions, weight
  ``video_emotion_weight``, default 1) and their embedding is added to the video embedding. Validation's
  ``*_noemo`` metrics then leave out both emotion terms (caption and video);
* ``text_model``: ``tiny`` (default for ``test_*`` backbones) | ``clip-b`` (CLIP ViT-B's text tower, default
  otherwise) | a dict of ``CLIPTextConfig`` fields;
* ``text_weights``: a Hugging Face CLIP folder or a CLIP-ViP ``.pt`` whose text tower is loaded at the start of
  training (the emotion rows start random);
* ``tokenizer``: ``hash[:VOCAB]`` | ``minilm`` | a tokenizer folder / hub id (default: ``hash`` without
  ``text_weights``; ``openai/clip-vit-base-patch32`` with them);
* ``max_text_len``: tokens per caption (default 32, at most the text model's positions);
* ``emotion_word_dropout``: probability of deleting the words that name emotions from a training caption, so
  the emotion embedding has to carry them (default 0: the original training).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from emovid.data.datasets import ClipDataset
from emovid.errors import ConfigError
from emovid.losses import info_nce
from emovid.tasks.base import Task, TaskModel, register_task, split_records

log = logging.getLogger(__name__)


def retrieval_ranks(sim: np.ndarray, positives: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """1-based rank of the best positive for each query row of ``sim`` ``[Q, G]``, ties counted against it.

    ``positives[q]`` holds the gallery column(s) that are correct for query ``q``. Ties are broken pessimistically:
    the rank is ``1 +`` the number of *other* (non-positive) gallery items scoring at least as high as the
    best-scoring positive, i.e. the worst position the first positive can take among the orderings the scores
    allow. A collapsed model whose similarities are all equal thus ranks every query last, not first.
    """
    ranks = np.empty(len(sim), np.int64)
    for q in range(len(sim)):
        row = sim[q]
        pos = np.zeros(row.shape[0], bool)
        pos[np.atleast_1d(positives[q])] = True
        best = np.max(row[pos])
        ranks[q] = 1 + int(np.sum((row >= best) & ~pos))
    return ranks


def rank_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    """R@1/5/10 (fraction of queries whose rank is ≤ K), median and mean rank."""
    r = np.asarray(ranks, np.float64)
    return {
        f"{prefix}_r1": float(np.mean(r <= 1)),
        f"{prefix}_r5": float(np.mean(r <= 5)),
        f"{prefix}_r10": float(np.mean(r <= 10)),
        f"{prefix}_medr": float(np.median(r)),
        f"{prefix}_meanr": float(np.mean(r)),
    }


def retrieval_metrics(text: np.ndarray, video: np.ndarray, video_ids: list[str], suffix: str = "") -> dict[str, float]:
    """t2v and v2t metrics of caption embeddings ``text`` ``[N, D]`` against the videos they describe.

    ``video`` ``[N, D]`` holds the video embedding of each caption's video (rows of one video are the same clip;
    the first is used); the gallery is the distinct videos.
    """
    order = list(dict.fromkeys(video_ids))
    col = {v: i for i, v in enumerate(order)}
    first = [video_ids.index(v) for v in order]
    gallery = video[first]
    sim = text @ gallery.T  # [captions, videos]
    gt = np.array([col[v] for v in video_ids])
    t2v = retrieval_ranks(sim, gt)
    caps_of = [np.flatnonzero(gt == j) for j in range(len(order))]
    v2t = retrieval_ranks(sim.T, caps_of)
    out = {**rank_metrics(t2v, "t2v"), **rank_metrics(v2t, "v2t")}
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10))
    return {k + suffix: v for k, v in out.items()}


class _EncodesText:
    """Text queries through ``self.head`` (a :class:`~emovid.retrieval.model.RetrievalHead`) and ``self.tokenizer``."""

    tokenizer: Any = None
    max_text_len: int = 32

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, self.max_text_len)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], emotions: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        dev = next(self.parameters()).device
        tok = self.tokenize(texts)
        emo = None if emotions is None else torch.as_tensor(np.asarray(emotions), dtype=torch.float32).to(dev)
        out = self.head.encode_text(tok["input_ids"].to(dev), tok["attention_mask"].to(dev), emo)
        return out.float().cpu().numpy()


class RetrievalModel(_EncodesText, TaskModel):
    """Video encoder + :class:`~emovid.retrieval.model.RetrievalHead`, with the text tokenizer attached.

    ``model(x)`` gives L2-normalised video embeddings; :meth:`encode_texts` gives L2-normalised text embeddings with
    an optional ``[N, 8]`` emotion matrix.
    """

    def encode_video(
        self, x: torch.Tensor, cached: bool = False, emotions: torch.Tensor | None = None, use_emotion: bool = True
    ) -> torch.Tensor:
        """Unit video embeddings; ``emotions``/``use_emotion``: the video-emotion term (``video_emotion="head"``)."""
        return self.head(self.features(x, cached), emotions=emotions, use_emotion=use_emotion)


class RetrievalTextSide(_EncodesText, nn.Module):
    """The text half of a trained :class:`RetrievalModel` (its head, without the video encoder): what a query
    needs. :func:`load_text_side` reads it from a run folder."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head


def load_text_side(path, map_location: str = "cpu") -> RetrievalTextSide:
    """A trained retrieval run's text side, without building or reading its video encoder (``emovid search``).

    Raises:
        ModelError: the folder is not a retrieval checkpoint, or its head weights do not fit its config.
    """
    from safetensors import safe_open

    from emovid.engine.model_dir import MODEL_FILE, read_model_dir
    from emovid.errors import ModelError
    from emovid.models.hub import load_state_dict

    cfg, mc = read_model_dir(path)
    if cfg.task != "retrieval" or "num_features" not in mc:
        raise ModelError(f"not a retrieval model folder (task {cfg.task!r})", path)
    task = RetrievalTask(cfg)
    side = RetrievalTextSide(task.build_retrieval_head(int(mc["num_features"]), cfg.model))
    side.tokenizer, side.max_text_len = task._tokenizer, task._max_len
    file = str(Path(path) / MODEL_FILE)
    try:
        with safe_open(file, framework="pt", device=map_location) as f:
            sd = {k[len("head.") :]: f.get_tensor(k) for k in f.keys() if k.startswith("head.")}  # noqa: SIM118
    except Exception as e:  # a damaged file (safetensors raises its own error types)
        raise ModelError(f"not a readable safetensors file ({e})", file) from e
    try:
        load_state_dict(side.head, sd, strict=True, source=file)
    except ModelError as e:
        raise ModelError(f"{path}: weights do not match the model in its config ({e.message})") from e
    return side.eval()


@register_task
class RetrievalTask(Task):
    name = "retrieval"
    default_model = "clip_vip_base_patch32"
    monitor = "val/rsum"
    mode = "max"

    def __init__(self, cfg):
        super().__init__(cfg)
        known = {"emotion", "text_model", "text_weights", "tokenizer", "max_text_len", "emotion_word_dropout"}
        known |= {"video_emotion", "video_emotion_weight"}
        unknown = sorted(set(cfg.extra) - known)
        if unknown:
            raise ConfigError(f"retrieval: unknown option(s) {', '.join(unknown)} in extra; known: {sorted(known)}")
        from emovid.retrieval.model import EMOTION_MODES, VIDEO_EMOTION_MODES

        self.emotion = str(cfg.extra.get("emotion", "add"))
        self.video_emotion = str(cfg.extra.get("video_emotion", "none"))
        for key, value, modes in (("emotion", self.emotion, EMOTION_MODES),
                                  ("video_emotion", self.video_emotion, VIDEO_EMOTION_MODES)):  # fmt: skip
            if value not in modes:
                raise ConfigError(f"retrieval: {key} must be one of {', '.join(modes)}, not {value!r}")
        try:
            self.video_emotion_weight = float(cfg.extra.get("video_emotion_weight", 1.0))
        except (TypeError, ValueError) as e:
            raise ConfigError("retrieval: video_emotion_weight must be a number") from e
        self.word_dropout = float(cfg.extra.get("emotion_word_dropout", 0.0))
        if not 0.0 <= self.word_dropout <= 1.0:
            raise ConfigError(f"retrieval: emotion_word_dropout must be in [0, 1], got {self.word_dropout}")
        self._loaded = False
        self._tokenizer = None
        self._max_len = None

    # ---- data ---------------------------------------------------------------------------------------------------

    def load(self) -> None:
        from emovid.data.readers.captions import captions_format, read_emotion_captions, read_msrvtt_captions

        if not self.cfg.data:
            raise ConfigError("retrieval: give the caption file with --data FILE (caption JSON or MSR-VTT csv/json)")
        path = Path(self.cfg.data)
        if not path.exists():
            raise ConfigError(f"{path}: no such caption file")
        # The same BOM-aware sniffing as the readers (and data check); it also refuses FIFOs before opening them.
        if captions_format(path) == "emotion":
            records = read_emotion_captions(path, self.cfg.video_root)
        else:
            records = read_msrvtt_captions(path, self.cfg.video_root)
        if not records:
            raise ConfigError(f"{path}: no captions")
        self.train_records, self.val_records = split_records(records, self.cfg)
        self._loaded = True

    def _tok(self):
        if self._tokenizer is None:
            self._resolve_text()
        return self._tokenizer

    def targets(self, record, frame_times, caption: str | None = None):
        tok = self._tok()(([caption if caption is not None else record.caption]), self._max_len)
        emo = torch.tensor(record.plutchik, dtype=torch.float32) if record.plutchik else torch.zeros(8)
        return {"input_ids": tok["input_ids"][0], "attention_mask": tok["attention_mask"][0], "emotions": emo > 0}

    def train_dataset(self, loader, epoch):
        if self.word_dropout <= 0:
            return super().train_dataset(loader, epoch)
        import re

        from emovid.retrieval.text import EMOTION_WORDS, emotions_from_text  # noqa: F401

        stems = tuple(s for group in EMOTION_WORDS.values() for s in group)
        seed, p = self.cfg.seed, self.word_dropout

        def targets(record, times):
            rng = np.random.default_rng([seed, int(epoch), record.index, 17])
            cap = record.caption
            if rng.random() < p:
                words = re.findall(r"\S+", cap)
                kept = [w for w in words if not re.sub(r"[^a-z]", "", w.lower()).startswith(stems)]
                cap = " ".join(kept) or cap
            return self.targets(record, times, caption=cap)

        return ClipDataset(self.train_records, loader, targets, seed=self.cfg.seed, epoch=epoch)

    # ---- model --------------------------------------------------------------------------------------------------

    def _resolve_text(self, backbone_name: str | None = None) -> dict[str, Any]:
        from emovid.retrieval.model import TINY_TEXT_CONFIG, load_tokenizer

        extra = self.cfg.extra
        name = backbone_name or self.cfg.model or self.default_model
        preset = extra.get("text_model", "tiny" if str(name).startswith("test_") else "clip-b")
        if isinstance(preset, dict):
            tcfg = dict(preset)
        elif preset == "tiny":
            tcfg = dict(TINY_TEXT_CONFIG)
        elif preset == "clip-b":
            tcfg = {}  # CLIPTextConfig defaults are CLIP ViT-B's text tower
        else:
            raise ConfigError(
                f"retrieval: text_model must be tiny, clip-b or a dict of CLIPTextConfig fields, not {preset!r}"
            )
        from transformers import CLIPTextConfig

        base = CLIPTextConfig(**tcfg)
        default_tok = "openai/clip-vit-base-patch32" if extra.get("text_weights") else f"hash:{base.vocab_size}"
        self._tokenizer = load_tokenizer(str(extra.get("tokenizer", default_tok)))
        if self._tokenizer.vocab_size > base.vocab_size:
            if extra.get("text_weights"):
                raise ConfigError(
                    f"retrieval: tokenizer {self._tokenizer.spec} has {self._tokenizer.vocab_size} ids but the text "
                    f"model only {base.vocab_size}"
                )
            tcfg["vocab_size"] = self._tokenizer.vocab_size
        self._max_len = int(min(int(extra.get("max_text_len", 32)), base.max_position_embeddings))
        return tcfg

    def build_head(self, num_features: int):
        raise NotImplementedError("retrieval builds its model in build_model")

    def build_retrieval_head(self, num_features: int, backbone_name: str | None = None):
        """The text encoder and video projection for a backbone of ``num_features`` (sets the tokenizer)."""
        from emovid.retrieval.model import EmotionTextEncoder, RetrievalHead

        tcfg = self._resolve_text(backbone_name)
        tcfg.setdefault("projection_dim", int(num_features))
        text = EmotionTextEncoder(tcfg, emotion=self.emotion)
        weights = self.cfg.extra.get("text_weights")
        if weights and self._loaded:  # a new run starts from them; a rebuilt checkpoint loads its own weights
            text.load_clip_weights(str(weights))
        return RetrievalHead(int(num_features), text, video_emotion=self.video_emotion)

    def build_model(self, backbone) -> RetrievalModel:
        head = self.build_retrieval_head(int(backbone.num_features), getattr(backbone, "model_name", None))
        model = RetrievalModel(backbone, head)
        model.tokenizer = self._tokenizer
        model.max_text_len = self._max_len
        return model

    # ---- steps --------------------------------------------------------------------------------------------------

    def _embed(self, model: RetrievalModel, batch: dict, cached: bool):
        t = batch["targets"]
        f = model.features(batch["video"], cached)
        v = model.head(f)
        return f, v, model.head.encode_text(t["input_ids"], t["attention_mask"], t["emotions"].float())

    def training_loss(self, model, batch, cached):
        f, v, t = self._embed(model, batch, cached)
        # Two captions of one video in a batch are not each other's negatives: masked in the loss.
        _, groups = np.unique(np.asarray(batch["meta"]["video_id"]), return_inverse=True)
        loss = info_nce(v, t, model.head.scale(), groups=torch.from_numpy(groups.reshape(-1)))
        if model.head.video_emotion == "head" and self.video_emotion_weight > 0:
            target = batch["targets"]["emotions"].float()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(model.head.video_emotion_logits(f), target)
            loss = loss + self.video_emotion_weight * bce
        return loss

    def predict(self, model, batch, cached):
        f, v, t = self._embed(model, batch, cached)
        tt = batch["targets"]
        t0 = model.head.encode_text(tt["input_ids"], tt["attention_mask"], None)
        v0 = model.head(f, use_emotion=False) if model.head.video_emotion != "none" else v
        return {"index": batch["meta"]["index"], "video": v, "text": t, "text_noemo": t0, "video_noemo": v0}

    def compute_metrics(self, outputs):
        ids = [str(self.val_records[int(i)].video_id) for i in outputs["index"]]
        out = retrieval_metrics(outputs["text"], outputs["video"], ids)
        v0 = outputs.get("video_noemo", outputs["video"])
        out.update(retrieval_metrics(outputs["text_noemo"], v0, ids, suffix="_noemo"))
        n = len(set(ids))
        out["chance_r1"] = 1.0 / n
        out["num_videos"] = float(n)
        return out
