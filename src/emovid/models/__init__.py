"""Backbones for every seed behind one registry.

>>> from emovid.models import create_model, list_models, pooled
>>> model = create_model("x3d_s", pretrained="X3D_S.pyth")  # doctest: +SKIP
>>> emb = pooled(model, clip)                                # doctest: +SKIP  (embedding [B, num_features])
>>> feats = model.forward_features(clip)                     # doctest: +SKIP  (unpooled tokens / map)

Families register themselves when first needed (:func:`list_models` / :func:`create_model` import them);
importing :mod:`emovid.models` itself loads no family and no weights.
"""

from __future__ import annotations

import importlib

from emovid.models.base import Backbone, pooled
from emovid.models.registry import (
    PretrainedCfg,
    WeightSource,
    create_model,
    create_transform,
    default_weights,
    get_model_entry,
    list_models,
    model_info,
    register_model,
)

# One module per family; each registers its models on import.
FAMILIES = ("x3d", "videomae", "resnet3d_gru", "emonext", "clip_vip", "fer", "facex", "hsemotion")
_imported = False


def _import_families() -> None:
    global _imported
    if _imported:
        return
    # Every family is part of the package: a failing import (ours or a required dependency's) is a bug or a
    # broken install and must surface, never shrink the registry silently. Optional third-party packages are
    # imported inside the functions that need them.
    for fam in FAMILIES:
        importlib.import_module(f"emovid.models.{fam}")
    _imported = True


__all__ = [
    "FAMILIES",
    "Backbone",
    "PretrainedCfg",
    "WeightSource",
    "create_model",
    "create_transform",
    "default_weights",
    "get_model_entry",
    "list_models",
    "model_info",
    "pooled",
    "register_model",
]
