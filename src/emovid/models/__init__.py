"""Backbones for every seed behind one registry.

>>> from emovid.models import create_model, list_models
>>> model = create_model("x3d_s", pretrained="X3D_S.pyth")  # doctest: +SKIP
>>> emb = model.forward_features(clip)                       # doctest: +SKIP

Families register themselves when first needed (:func:`list_models` / :func:`create_model` import them);
importing :mod:`emovid.models` itself loads no family and no weights.
"""

from __future__ import annotations

import importlib

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
    for fam in FAMILIES:
        try:
            importlib.import_module(f"emovid.models.{fam}")
        except ModuleNotFoundError as e:
            if e.name != f"emovid.models.{fam}":
                raise
    _imported = True


__all__ = [
    "FAMILIES",
    "PretrainedCfg",
    "WeightSource",
    "create_model",
    "create_transform",
    "default_weights",
    "get_model_entry",
    "list_models",
    "model_info",
    "register_model",
]
