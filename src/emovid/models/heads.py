"""Heads over per-video sequences of face embeddings (EmoNeXt recipe) and the input stub that feeds them.

The EmoNeXt recipe embeds 30 face crops per video (``[30, 1024]`` with EmoNeXt) once, then trains small Transformers on
those sequences. :class:`EmbeddingInput` stands where a video backbone would be, so such heads train on the
same engine as every other task; :class:`SequenceTransformer` is the Transformer head.
Padding rows (no face) are all-zero and are masked out of attention and pooling.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emovid.models.registry import PretrainedCfg


class EmbeddingInput(nn.Module):
    """Identity "backbone" for precomputed embeddings ``[B, N, dim]`` (``num_features = dim``)."""

    def __init__(self, dim: int, num_crops: int = 30):
        super().__init__()
        self.num_features = dim
        self.model_name = "embeddings"
        self.pretrained_cfg = PretrainedCfg(num_frames=num_crops, face_crop=True, input_size=(224, 224))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x  # the sequence itself is what the heads read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def padding_mask(x: torch.Tensor) -> torch.Tensor:
    """True where a row of ``[B, N, D]`` is padding (all zeros)."""
    return x.abs().sum(-1) == 0


class SequenceTransformer(nn.Module):
    """Project ``[B, N, dim]`` to ``d_model``, add learned positions, run a Transformer encoder, mean-pool the real
    rows and map to ``num_outputs``.

    Args:
        dim: input embedding size (1024 for EmoNeXt-Base).
        num_outputs: 7 emotion logits (MOSEI) or 5 trait values (FIV2).
        d_model: width of the encoder.
        layers: encoder layers.
        heads: attention heads.
        max_len: longest sequence (the EmoNeXt recipe uses 30 crops).
    """

    def __init__(
        self,
        dim: int,
        num_outputs: int,
        d_model: int = 256,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        max_len: int = 64,
    ):
        super().__init__()
        self.proj = nn.Linear(dim, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, num_outputs)
        self.d_model = d_model

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features ``[B, N, d_model]`` and the padding mask ``[B, N]``."""
        if x.ndim == 2:
            x = x[:, None]
        pad = padding_mask(x)
        all_pad = pad.all(1)
        pad = pad.clone()
        pad[all_pad, 0] = False  # a video without faces still attends to one (zero) row instead of NaN
        h = self.proj(x) + self.pos[:, : x.shape[1]]
        return self.encoder(h, src_key_padding_mask=pad), pad

    def pool(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        keep = (~pad).unsqueeze(-1).to(tokens.dtype)
        return self.norm((tokens * keep).sum(1) / keep.sum(1).clamp_min(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, pad = self.encode(x)
        return self.out(self.pool(tokens, pad))


class MultiTaskFusionModel(nn.Module):
    """The EmoNeXt recipe's fusion: two trained sequence heads, frozen, as feature extractors; one Transformer encoder
    per
    stream; cross-attention both ways; a shared MLP; dual heads for 5 traits and 7 emotions.

    Args:
        emotion_head: trained MOSEI :class:`SequenceTransformer` (frozen here).
        trait_head: trained FIV2 :class:`SequenceTransformer` (frozen here).
        d_model: width of the fusion encoders.
    """

    def __init__(
        self,
        emotion_head: SequenceTransformer,
        trait_head: SequenceTransformer,
        d_model: int = 128,
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.emotion_head, self.trait_head = emotion_head, trait_head
        for p in list(emotion_head.parameters()) + list(trait_head.parameters()):
            p.requires_grad_(False)
        self.proj_e = nn.Linear(emotion_head.d_model, d_model)
        self.proj_t = nn.Linear(trait_head.d_model, d_model)

        def encoder():
            layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout, batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

        self.enc_e, self.enc_t = encoder(), encoder()
        self.cross_e = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)  # emotions ask traits
        self.cross_t = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)  # traits ask emotions
        self.norm_e, self.norm_t = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.shared = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.GELU(), nn.Dropout(dropout))
        self.traits = nn.Linear(d_model, 5)
        self.emotions = nn.Linear(d_model, 7)

    def train(self, mode: bool = True):
        super().train(mode)
        self.emotion_head.eval()  # frozen extractors: no dropout
        self.trait_head.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ``[B, N, dim]`` face-embedding sequences. Returns ``{"traits": [B, 5] in [0, 1],
        "emotion_logits": [B, 7]}``."""
        with torch.no_grad():
            te, pad = self.emotion_head.encode(x)
            tt, _ = self.trait_head.encode(x)
        e = self.enc_e(self.proj_e(te), src_key_padding_mask=pad)
        t = self.enc_t(self.proj_t(tt), src_key_padding_mask=pad)
        e = self.norm_e(e + self.cross_e(e, t, t, key_padding_mask=pad, need_weights=False)[0])
        t = self.norm_t(t + self.cross_t(t, e, e, key_padding_mask=pad, need_weights=False)[0])
        keep = (~pad).unsqueeze(-1).to(e.dtype)
        n = keep.sum(1).clamp_min(1.0)
        z = self.shared(torch.cat([(e * keep).sum(1) / n, (t * keep).sum(1) / n], -1))
        return {"traits": torch.sigmoid(self.traits(z)), "emotion_logits": self.emotions(z)}
