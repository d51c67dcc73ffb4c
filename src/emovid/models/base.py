"""Shared pieces of backbones: the classifier-head convention."""

from __future__ import annotations

import torch
import torch.nn as nn


class Backbone(nn.Module):
    """Base of emovid backbones: ``forward_features`` gives ``[B, num_features]``; ``forward`` adds ``head``.

    Subclasses set ``num_features`` and implement :meth:`forward_features`; ``head`` is a ``Linear`` when
    ``num_classes > 0`` and ``Identity`` otherwise (so ``forward`` returns the embedding).
    """

    num_features: int

    def init_head(self, num_classes: int, drop_rate: float = 0.0) -> None:
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
