"""Emotion-aware text–video dual encoder: CLIP text transformer with an 8-emotion embedding, CLIP-ViP video encoder.

The text side is ``transformers``' ``CLIPTextModelWithProjection`` (state-dict keys ``text_model.*`` and
``text_projection.weight``, so :func:`emovid.models.clip_vip.load_clip_text_model` weights drop in) with the
**emotion embedding** ``nn.Embedding(8, D)`` over the Plutchik emotions (:data:`PLUTCHIK_EMOTIONS` order):

* the caption's 8 Plutchik scores are binarised (``> 0``);
* the emotion vector is the masked mean of the selected rows, ``sum_k m_k E_k / (sum_k m_k + 1e-8)`` (all-zero
  masks give a zero vector, i.e. the plain CLIP text encoder);
* ``emotion="add"`` (the original recipe): it is added to every position, ``embeddings = token + position + emotion``;
* ``emotion="concat"`` (the original "future work"): ``[token + position, emotion]`` goes through a linear layer
  ``2D -> D`` that starts as ``[I, 0]`` (so an untrained layer leaves a loaded CLIP unchanged);
* ``emotion="xattn"`` (the original second future-work item, after Zhang et al., TCSVT 2023): a separate emotion
  encoder (:class:`EmotionEncoder`: the caption's selected emotion rows plus an always-present "no emotion" token,
  through one transformer layer) and cross-attention (:class:`CrossAttentionFusion`): the emotion tokens attend to
  the text tokens, then the pooled text state attends to the emotion tokens; the video embedding does the same with
  the bank of all eight emotion tokens (:class:`RetrievalHead`). The attention outputs start at zero, so an
  untrained fusion leaves a loaded CLIP unchanged;
* ``emotion="none"``: no emotion term.

Emotion read from the video itself (the original third item): ``video_emotion="head"`` gives
:class:`RetrievalHead` a linear head predicting the 8 Plutchik emotions from the video features (trained against
the captions' binarised emotions) and a video emotion table ``nn.Embedding(8, D)``; the video embedding becomes
``video_proj(f) + sum_k p_k V_k / (sum_k p_k + 1e-8)`` with ``p`` the head's sigmoid outputs, or per-video
emotion scores given from outside (``emovid analyze``'s emotions mapped to Plutchik). The table starts at zero.

Then CLIP's causal transformer, ``final_layer_norm``, the hidden state of the last real token (CLIP's end-of-text;
with right padding it is ``attention_mask.sum() - 1``) and ``text_projection``.

Tokenizers (:func:`load_tokenizer`): ``hash[:VOCAB]`` (a word-hashing tokenizer with no files, for tiny models and
tests), ``minilm`` (the WordPiece vocabulary of the bundled all-MiniLM-L6-v2), or a Hugging Face tokenizer folder /
hub id (CLIP's BPE, e.g. ``openai/clip-vit-base-patch32``, needed for real CLIP text weights).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import ConfigError, WeightsUnavailableError

NUM_EMOTIONS = len(PLUTCHIK_EMOTIONS)
EMOTION_MODES = ("add", "concat", "xattn", "none")
VIDEO_EMOTION_MODES = ("none", "head")

#: ``CLIPTextConfig`` of the tiny text tower used with ``test_clip_vip`` (fast tests).
TINY_TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=1024,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=32,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def binarize_emotions(scores: torch.Tensor | Sequence) -> torch.Tensor:
    """The CLIP-ViP recipe: Plutchik scores ``[B, 8]`` (or ``[8]``) → float 0/1 mask, 1 where the score is > 0."""
    s = torch.as_tensor(scores, dtype=torch.float32)
    return torch.where(s > 0, torch.ones_like(s), torch.zeros_like(s))


def emotion_vector(names: Sequence[str]) -> torch.Tensor:
    """The binarised ``[8]`` vector of Plutchik emotion names.

    Raises:
        ConfigError: a name is not one of :data:`PLUTCHIK_EMOTIONS`.
    """
    v = torch.zeros(NUM_EMOTIONS)
    for n in names:
        key = n.strip().lower()
        if key not in PLUTCHIK_EMOTIONS:
            raise ConfigError(f"unknown emotion {n!r}; choose from {', '.join(PLUTCHIK_EMOTIONS)}")
        v[PLUTCHIK_EMOTIONS.index(key)] = 1.0
    return v


class EmotionEmbedding(nn.Module):
    """``nn.Embedding(8, D)`` and the original masked mean of the rows selected by binarised emotion scores."""

    def __init__(self, dim: int, num_emotions: int = NUM_EMOTIONS):
        super().__init__()
        self.embedding = nn.Embedding(num_emotions, dim)

    def forward(self, emotions: torch.Tensor) -> torch.Tensor:
        """``[B, 8]`` scores (any non-negative values; binarised here) → ``[B, D]``."""
        mask = binarize_emotions(emotions).to(self.embedding.weight.device)
        all_embeds = self.embedding.weight.unsqueeze(0).expand(mask.shape[0], -1, -1)  # [B, 8, D]
        m = mask.unsqueeze(-1).type_as(all_embeds)  # [B, 8, 1]
        return (all_embeds * m).sum(1) / (m.sum(1) + 1e-8)


def _heads(dim: int) -> int:
    """Attention heads for a width: the most of 8, 4, 2 that divide it with at least 4 channels each, else 1."""
    return next((h for h in (8, 4, 2) if dim % h == 0 and dim // h >= 4), 1)


class EmotionEncoder(nn.Module):
    """The separate emotion encoder of ``emotion="xattn"``: emotion tokens through one transformer layer.

    Tokens are the 8 emotion rows and a "no emotion" row (always present, so an all-zero emotion vector still has
    something to attend to). ``forward(emotions)`` returns ``[B, 9, D]`` tokens and a ``[B, 9]`` padding mask
    (True = left out: the emotions the caption does not have); ``emotions=None`` gives the bank of all nine.
    """

    def __init__(self, dim: int, num_emotions: int = NUM_EMOTIONS):
        super().__init__()
        self.num_emotions = num_emotions
        self.embedding = nn.Embedding(num_emotions + 1, dim)
        self.layer = nn.TransformerEncoderLayer(
            dim, _heads(dim), 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )

    def forward(self, emotions: torch.Tensor | None = None, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.embedding.weight
        if emotions is None:
            keep = torch.ones(batch, self.num_emotions + 1, dtype=torch.bool, device=w.device)
        else:
            m = binarize_emotions(emotions).to(w.device) > 0
            keep = torch.cat([m, torch.ones(m.shape[0], 1, dtype=torch.bool, device=w.device)], 1)
        pad = ~keep
        tokens = self.layer(w.unsqueeze(0).expand(keep.shape[0], -1, -1), src_key_padding_mask=pad)
        return tokens, pad


class CrossAttentionFusion(nn.Module):
    """Emotion tokens attend to a modality's tokens, then the modality's pooled state attends to them.

    ``forward(tokens [B, L, Dx], pad [B, L] or None, pooled [B, Dx], emo [B, K, De], emo_pad [B, K])`` returns
    ``pooled + attention`` ``[B, Dx]``; the output projections start at zero (the identity at initialisation).
    """

    def __init__(self, dim: int, emotion_dim: int):
        super().__init__()
        self.norm_e = nn.LayerNorm(emotion_dim)
        self.emotion_from_x = nn.MultiheadAttention(
            emotion_dim, _heads(emotion_dim), kdim=dim, vdim=dim, batch_first=True
        )
        self.norm_x = nn.LayerNorm(dim)
        self.x_from_emotion = nn.MultiheadAttention(
            dim, _heads(dim), kdim=emotion_dim, vdim=emotion_dim, batch_first=True
        )
        with torch.no_grad():
            for att in (self.emotion_from_x, self.x_from_emotion):
                att.out_proj.weight.zero_()
                att.out_proj.bias.zero_()

    def forward(self, tokens, pad, pooled, emo, emo_pad) -> torch.Tensor:
        e = emo + self.emotion_from_x(self.norm_e(emo), tokens, tokens, key_padding_mask=pad, need_weights=False)[0]
        q = self.norm_x(pooled).unsqueeze(1)
        out = self.x_from_emotion(q, e, e, key_padding_mask=emo_pad, need_weights=False)[0][:, 0]
        return pooled + out


class EmotionTextEncoder(nn.Module):
    """CLIP text transformer + projection with the original emotion embedding.

    Args:
        text_config: ``CLIPTextConfig`` fields (``projection_dim`` included); defaults are CLIP ViT-B's.
        emotion: ``add`` (CLIP-ViP recipe), ``concat`` / ``xattn`` (the original future-work variants) or ``none``.
    """

    def __init__(self, text_config: dict[str, Any] | None = None, emotion: str = "add"):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        if emotion not in EMOTION_MODES:
            raise ConfigError(f"unknown emotion mode {emotion!r}; choose one of {', '.join(EMOTION_MODES)}")
        self.config = CLIPTextConfig(**(text_config or {}))
        self.clip = CLIPTextModelWithProjection(self.config)
        d = self.config.hidden_size
        self.emotion_mode = emotion
        self.emotion_embedding = EmotionEmbedding(d) if emotion in ("add", "concat") else None
        if emotion == "xattn":
            self.emotion_encoder = EmotionEncoder(d)
            self.emotion_fusion = CrossAttentionFusion(d, d)
        if emotion == "concat":
            self.emotion_fc = nn.Linear(2 * d, d)
            with torch.no_grad():
                self.emotion_fc.weight.zero_()
                self.emotion_fc.weight[:, :d].copy_(torch.eye(d))
                self.emotion_fc.bias.zero_()
        self.output_dim = int(self.config.projection_dim)

    @property
    def max_length(self) -> int:
        return int(self.config.max_position_embeddings)

    def embed_tokens(self, input_ids: torch.Tensor, emotions: torch.Tensor | None = None) -> torch.Tensor:
        """Token + position (+ emotion) embeddings ``[B, L, D]``: the original notebook cell, in the model."""
        emb = self.clip.text_model.embeddings
        length = input_ids.shape[-1]
        if length > self.max_length:
            raise ValueError(f"text of {length} tokens is longer than the model's {self.max_length} positions")
        h = emb.token_embedding(input_ids) + emb.position_embedding(emb.position_ids[:, :length])
        if self.emotion_embedding is None:
            return h
        if emotions is None:  # no emotion term: the all-zero mask (a zero vector; through the fc for concat)
            emotions = torch.zeros(h.shape[0], NUM_EMOTIONS, device=h.device)
        e = self.emotion_embedding(emotions).unsqueeze(1).expand(-1, length, -1)  # [B, L, D]
        if self.emotion_mode == "add":
            return h + e
        return self.emotion_fc(torch.cat([h, e], dim=-1))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, emotions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected text embeddings ``[B, projection_dim]`` (not normalised)."""
        tm = self.clip.text_model
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.embed_tokens(input_ids, emotions)
        length = h.shape[1]
        # CLIP's text transformer is causal; padding sits after the end token, so it never reaches the pooled state
        causal = torch.full((length, length), torch.finfo(h.dtype).min, device=h.device, dtype=h.dtype).triu(1)
        mask = causal[None, None]
        for layer in tm.encoder.layers:
            h = layer(h, mask)
        h = tm.final_layer_norm(h)
        last = (attention_mask.sum(-1).clamp(min=1) - 1).long()
        pooled = h[torch.arange(h.shape[0], device=h.device), last]
        if self.emotion_mode == "xattn":
            if emotions is None:
                emotions = torch.zeros(h.shape[0], NUM_EMOTIONS, device=h.device)
            emo, emo_pad = self.emotion_encoder(emotions)
            # keys: the tokens up to the end token (causal states: later positions are padding)
            pad = torch.arange(length, device=h.device)[None] > last[:, None]
            pooled = self.emotion_fusion(h, pad, pooled, emo, emo_pad)
        return self.clip.text_projection(pooled)

    def load_clip_weights(self, source: str) -> None:
        """Load CLIP text-tower weights (HF CLIP folder or CLIP-ViP ``.pt``) into this encoder; emotion rows stay."""
        from emovid.models.clip_vip import load_clip_text_model

        fields = self.config.to_dict()
        keep = {k: fields[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "projection_dim")}
        ref = load_clip_text_model(source, text_config=keep)
        self.clip.load_state_dict(ref.state_dict(), strict=True)


class RetrievalHead(nn.Module):
    """What a retrieval :class:`~emovid.tasks.base.TaskModel` trains besides the video encoder.

    ``text`` is the :class:`EmotionTextEncoder`; ``video_proj`` maps the backbone's embedding into the text
    encoder's space when their sizes differ (identity otherwise, as for CLIP-ViP + CLIP text); ``logit_scale`` is
    CLIP's learnable log inverse temperature (initialised to ``log(1 / 0.07)``, clamped to 100 when used).
    ``forward(video_features)`` returns L2-normalised video embeddings.

    With ``text.emotion_mode == "xattn"`` the projected video embedding cross-attends with the text encoder's bank
    of emotion tokens (``video_fusion``). With ``video_emotion="head"`` the video's own emotions (predicted by
    ``video_emotion_head``, or given) add a term from ``video_emotion_embedding`` (see the module docstring).
    """

    def __init__(
        self,
        num_features: int,
        text: EmotionTextEncoder,
        init_temperature: float = 0.07,
        video_emotion: str = "none",
    ):
        super().__init__()
        if video_emotion not in VIDEO_EMOTION_MODES:
            raise ConfigError(
                f"unknown video_emotion {video_emotion!r}; choose one of {', '.join(VIDEO_EMOTION_MODES)}"
            )
        self.text = text
        out = text.output_dim
        self.video_proj = nn.Identity() if num_features == out else nn.Linear(num_features, out, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        if text.emotion_mode == "xattn":
            self.video_fusion = CrossAttentionFusion(out, text.config.hidden_size)
        self.video_emotion = video_emotion
        if video_emotion == "head":
            self.video_emotion_head = nn.Linear(num_features, NUM_EMOTIONS)
            self.video_emotion_embedding = nn.Embedding(NUM_EMOTIONS, out)
            nn.init.zeros_(self.video_emotion_embedding.weight)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    def video_emotion_logits(self, video_features: torch.Tensor) -> torch.Tensor:
        """``[B, 8]`` logits of the video's Plutchik emotions (``video_emotion="head"`` only)."""
        return self.video_emotion_head(video_features)

    def forward(
        self, video_features: torch.Tensor, emotions: torch.Tensor | None = None, use_emotion: bool = True
    ) -> torch.Tensor:
        """Unit video embeddings.

        Args:
            emotions: ``[B, 8]`` per-video emotion scores in [0, 1] to use instead of the head's predictions.
            use_emotion: ``False`` leaves out the video-emotion term (``video_emotion="head"``).
        """
        v = self.video_proj(video_features)
        if self.text.emotion_mode == "xattn":
            bank, bank_pad = self.text.emotion_encoder(None, batch=v.shape[0])
            v = self.video_fusion(v.unsqueeze(1), None, v, bank, bank_pad)
        if self.video_emotion == "head" and use_emotion:
            if emotions is None:
                p = torch.sigmoid(self.video_emotion_logits(video_features))
            else:
                p = torch.as_tensor(emotions, dtype=v.dtype, device=v.device).clamp(0, 1)
            v = v + p @ self.video_emotion_embedding.weight / (p.sum(-1, keepdim=True) + 1e-8)
        return F.normalize(v, dim=-1)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, emotions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.normalize(self.text(input_ids, attention_mask, emotions), dim=-1)


# ---- tokenizers -----------------------------------------------------------------------------------------------------


class HashTokenizer:
    """A file-free word tokenizer: lower-cased words hashed (CRC-32) into ``vocab_size - 3`` ids.

    Ids: 0 pad, 1 start, 2 end; ``[1, w_1, ..., w_n, 2, 0, ...]``. Good enough for tiny models trained from scratch
    on small vocabularies (synthetic captions); real CLIP weights need CLIP's own BPE tokenizer.
    """

    def __init__(self, vocab_size: int = 1024):
        if vocab_size < 16:
            raise ConfigError(f"hash tokenizer: vocab_size must be >= 16, got {vocab_size}")
        self.vocab_size = vocab_size
        self.spec = f"hash:{vocab_size}"

    def ids(self, text: str) -> list[int]:
        words = re.findall(r"[a-z0-9']+", text.lower())
        return [3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in words]

    def __call__(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, t in enumerate(texts):
            seq = [1, *self.ids(t)[: max_length - 2], 2]
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class HFTokenizer:
    """A ``transformers`` tokenizer padded to a fixed length (so dataset samples stack)."""

    def __init__(self, tok, spec: str):
        self.tok = tok
        self.spec = spec
        self.vocab_size = len(tok)

    def __call__(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        out = self.tok(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


def load_tokenizer(spec: str = "hash"):
    """``hash`` / ``hash:VOCAB`` | ``minilm`` (bundled WordPiece) | a tokenizer folder or hub id.

    Raises:
        WeightsUnavailableError: the tokenizer files cannot be found (offline, or the package is missing).
    """
    if spec == "hash" or spec.startswith("hash:"):
        size = spec.partition(":")[2]
        try:
            return HashTokenizer(int(size) if size else 1024)
        except ValueError as e:
            raise ConfigError(f"tokenizer {spec!r}: expected hash:VOCAB_SIZE") from e
    from transformers import AutoTokenizer

    if spec == "minilm":
        from emovid.retrieval.text import minilm_dir

        return HFTokenizer(AutoTokenizer.from_pretrained(str(minilm_dir())), spec)
    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(spec), spec)
    except (OSError, ValueError) as e:
        raise WeightsUnavailableError(
            f"tokenizer {spec!r} could not be loaded ({type(e).__name__}); give a local tokenizer folder "
            "(vocab + merges of the CLIP model whose text weights you load), or use 'hash' / 'minilm'"
        ) from e
