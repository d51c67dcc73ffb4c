"""Heads over per-video sequences of face embeddings (seed 001) and the input stub that feeds them.

Seed 001 embeds 30 face crops per video (``[30, 1024]`` with EmoNeXt) once, then trains small Transformers on
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
        max_len: longest sequence (seed 001 uses 30 crops).
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
