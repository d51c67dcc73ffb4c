"""The model contract every emovid backbone follows (timm's): features, head, intermediates, classifier, groups.

* ``forward_features(x)`` — the **unpooled** features: a token sequence ``[B, N, C]``, a feature map
  ``[B, C, H, W]`` / ``[B, C, T, H, W]``, or per-frame features ``[B, T, C]``;
* ``forward_head(feats, pre_logits=False)`` — from those features: the pooled embedding ``[B, num_features]``
  (``pre_logits=True``) or the classifier's output (the embedding itself when ``num_classes == 0``);
* ``forward(x) == forward_head(forward_features(x))``;
* ``forward_intermediates(x, indices=None)`` — ``(final features, [outputs of the chosen blocks])``;
* ``num_features``, ``get_classifier()``, ``reset_classifier(num_classes)`` — the classifier lives at the dotted
  attribute :attr:`Backbone.classifier_name` (``"head"`` unless a checkpoint layout fixes another name);
* ``group_matcher(coarse=False)`` — ``{"stem": regex, "blocks": [(regex, index), ...], "head": regex}``, which
  layer-wise LR decay (``--layer-decay``) reads; every parameter matches exactly one of them.

Callers that want the pooled embedding say so with :func:`pooled` (or ``forward_head(..., pre_logits=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def pooled(model: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """The pooled embedding ``[B, num_features]`` of ``x``: ``forward_head(forward_features(x), pre_logits=True)``.

    ``kwargs`` (e.g. ``lengths`` of padded clips) go to both calls. A module without ``forward_head`` (a plain
    feature extractor whose ``forward_features`` already pools, such as a precomputed-embedding input) gives
    ``forward_features(x)``.
    """
    if hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x, **kwargs), pre_logits=True, **kwargs)
    return model.forward_features(x, **kwargs)


def take_indices(num_blocks: int, indices: int | Sequence[int] | None) -> list[int]:
    """Block indices for :meth:`Backbone.forward_intermediates`, as timm's ``feature_take_indices``: ``None`` = all,
    an int ``n`` = the last ``n`` blocks, a sequence = those blocks (negative indices count from the end).

    Raises:
        IndexError: an index outside ``[-num_blocks, num_blocks)`` or ``n`` outside ``[0, num_blocks]``.
    """
    if indices is None:
        return list(range(num_blocks))
    if isinstance(indices, int):
        if not 0 <= indices <= num_blocks:
            raise IndexError(f"asked for the last {indices} of {num_blocks} blocks")
        return list(range(num_blocks - indices, num_blocks))
    out = []
    for i in indices:
        if not -num_blocks <= i < num_blocks:
            raise IndexError(f"block index {i} out of range for {num_blocks} blocks")
        out.append(i % num_blocks)
    return out


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class Backbone(nn.Module):
    """Base of emovid backbones (see the module docstring for the contract).

    A family implements :meth:`forward_features` (unpooled), :meth:`pool_features` (unpooled -> ``[B, D]``),
    :meth:`feature_blocks` and ``group_matcher(coarse=False)``, sets ``num_features`` and builds its classifier with
    :meth:`init_head` (or :meth:`reset_classifier`). Everything else is here, once.

    ``group_matcher`` returns ``{"stem": regex, "blocks": [(regex, index or None), ...], "head": regex}`` over
    parameter names (:mod:`emovid.train.optim` reads ``stem`` and ``blocks``: a ``None`` index takes the block
    number from the regex's first group; ``head`` names the rest: final norms, pooling, classifier);
    ``coarse=True`` groups whole stages where the family has them. It is not defined here, so that layer-wise LR
    decay refuses a backbone that does not say its groups.
    """

    num_features: int
    num_classes: int = 0
    #: dotted attribute path of the classifier module (``"blocks.5.proj"`` for X3D's pytorchvideo layout)
    classifier_name: str = "head"

    # ---- classifier ------------------------------------------------------------------------------------------

    def init_head(self, num_classes: int, drop_rate: float = 0.0) -> None:
        """Dropout ``head_drop`` and the classifier: ``new_classifier(num_classes)``, or ``Identity`` for 0."""
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.reset_classifier(num_classes)

    def new_classifier(self, num_classes: int) -> nn.Module:
        """A fresh classifier with ``num_classes > 0`` outputs (a family whose head is not ``Linear(D, n)`` overrides
        this, and only this)."""
        return nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        """The classifier module (``Identity`` when ``num_classes == 0``)."""
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs; 0 removes it, so ``forward`` returns
        the pooled embedding."""
        self.num_classes = int(num_classes)
        head = self.new_classifier(self.num_classes) if self.num_classes > 0 else nn.Identity()
        _set_submodule(self, self.classifier_name, head)

    # ---- forward ---------------------------------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features of ``x`` (tokens ``[B, N, C]`` or a map)."""
        raise NotImplementedError

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Unpooled features -> the embedding ``[B, num_features]`` (the family's pooling, final norm/projection)."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False, **kwargs) -> torch.Tensor:
        """From :meth:`forward_features`' output: the pooled embedding (``pre_logits=True``, no dropout) or
        ``classifier(head_drop(embedding))``. ``kwargs`` go to :meth:`pool_features`."""
        x = self.pool_features(x, **kwargs)
        if pre_logits:
            return x
        return self.get_classifier()(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ---- intermediates and parameter groups ------------------------------------------------------------------

    def feature_blocks(self) -> list[nn.Module]:
        """The blocks whose outputs :meth:`forward_intermediates` returns, in forward order."""
        raise NotImplementedError

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, **kwargs
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(forward_features(x), [output of each chosen block])``; ``indices`` as in :func:`take_indices`.

        Outputs are the blocks' own (a per-frame trunk gives ``[B * T, C, H, W]``; a transformer layer's tuple is
        reduced to its hidden states).
        """
        blocks = self.feature_blocks()
        take = take_indices(len(blocks), indices)
        got: dict[int, torch.Tensor] = {}

        def keep(i: int):
            def hook(_module, _inputs, output):
                got[i] = output[0] if isinstance(output, (tuple, list)) else output

            return hook

        handles = [blocks[i].register_forward_hook(keep(i)) for i in sorted(set(take))]
        try:
            final = self.forward_features(x, **kwargs)
        finally:
            for h in handles:
                h.remove()
        return final, [got[i] for i in take]
