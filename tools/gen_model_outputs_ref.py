"""Write ``tests/fixtures/model_outputs_ref.npz``: what every cheap registered model computes on fixed inputs.

For each case of :data:`CASES` the model is built with ``torch.manual_seed(0)`` right before
``create_model(name, **overrides)`` (random weights, no download), put in eval mode, and fed a float32 input drawn
from its own generator (seed 1). Stored per case, float32:

* ``{case}/forward``: ``model(x)``;
* ``{case}/pooled``: the pooled embedding ``[B, num_features]`` (``forward_head(forward_features(x),
  pre_logits=True)``; before the timm-style contract it was what ``forward_features`` returned).

``__spec__`` holds the cases as JSON (model name, overrides, input shape, extra keyword arguments), so
``tests/test_model_outputs_stable.py`` rebuilds exactly the same models and inputs. The numbers were written before
the model API moved to ``forward_features`` = unpooled features; the test keeps them equal to 1e-5.

Covered: every ``test_*`` model (with its default head and with ``num_classes=3``) and every registered model under
~30 M parameters on small inputs (the clip length / frame size a model accepts is unchanged in its weights).

    .venv/bin/python tools/gen_model_outputs_ref.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "model_outputs_ref.npz"

# case name -> (model, create_model overrides, input shape, extra keyword arguments of forward / pooling)
CASES: dict[str, tuple[str, dict, tuple[int, ...], dict]] = {
    "test_x3d": ("test_x3d", {}, (2, 3, 4, 32, 32), {}),
    "test_x3d_head": ("test_x3d", {"num_classes": 3}, (2, 3, 4, 32, 32), {}),
    "test_videomae": ("test_videomae", {}, (2, 3, 4, 32, 32), {}),
    "test_videomae_head": ("test_videomae", {"num_classes": 3}, (2, 3, 4, 32, 32), {}),
    "test_clip_vip": ("test_clip_vip", {}, (2, 3, 3, 32, 32), {}),
    "test_clip_vip_head": ("test_clip_vip", {"num_classes": 3}, (2, 3, 3, 32, 32), {}),
    "test_emonext": ("test_emonext", {}, (2, 3, 64, 64), {}),
    "test_emonext_head": ("test_emonext", {"num_classes": 3}, (2, 3, 64, 64), {}),
    "test_emonext_clip": ("test_emonext", {"num_classes": 3}, (2, 3, 3, 64, 64), {}),
    "test_resnet18_3dstem": ("test_resnet18_3dstem", {}, (2, 1, 4, 32, 32), {}),
    "test_resnet18_3dstem_head": ("test_resnet18_3dstem", {"num_classes": 3}, (2, 1, 4, 32, 32), {}),
    "test_resnet18_3dstem_gru": ("test_resnet18_3dstem_gru", {}, (2, 1, 4, 32, 32), {}),
    "test_resnet18_3dstem_gru_head": ("test_resnet18_3dstem_gru", {"num_classes": 3}, (2, 1, 4, 32, 32), {}),
    "test_resnet18_3dstem_gru_lengths": (
        "test_resnet18_3dstem_gru",
        {"num_classes": 3},
        (2, 1, 4, 32, 32),
        {"lengths": [4, 2]},
    ),
    "test_fer_mini_xception": ("test_fer_mini_xception", {}, (2, 1, 64, 64), {}),
    "test_fer_mini_xception_nohead": ("test_fer_mini_xception", {"num_classes": 0}, (2, 1, 64, 64), {}),
    "test_facex_mobilenetv2": ("test_facex_mobilenetv2", {}, (2, 3, 64, 64), {}),
    "test_facex_mobilenetv2_nohead": ("test_facex_mobilenetv2", {"num_classes": 0}, (2, 3, 64, 64), {}),
    "test_hsemotion_enet": ("test_hsemotion_enet", {}, (2, 3, 52, 52), {}),
    "test_hsemotion_enet_nohead": ("test_hsemotion_enet", {"num_classes": 0}, (2, 3, 52, 52), {}),
    # real architectures (random weights) on small inputs
    "x3d_xs": ("x3d_xs", {}, (1, 3, 4, 64, 64), {}),
    "x3d_s": ("x3d_s", {"num_classes": 0}, (1, 3, 4, 64, 64), {}),
    "x3d_m": ("x3d_m", {}, (1, 3, 4, 64, 64), {}),
    "x3d_l": ("x3d_l", {}, (1, 3, 2, 64, 64), {}),
    "videomae_small_patch16_224": (
        "videomae_small_patch16_224",
        {"num_frames": 2, "image_size": 32, "num_classes": 3},
        (1, 3, 2, 32, 32),
        {},
    ),
    "emonext_tiny": ("emonext_tiny", {"num_classes": 7}, (1, 3, 32, 32), {}),
    "resnet18_3dstem": ("resnet18_3dstem", {}, (1, 1, 2, 32, 32), {}),
    "resnet18_3dstem_gru": ("resnet18_3dstem_gru", {"num_classes": 2}, (1, 1, 2, 32, 32), {}),
    "fer_mini_xception": ("fer_mini_xception", {}, (2, 1, 64, 64), {}),
    "facex_mobilenetv2": ("facex_mobilenetv2", {}, (1, 3, 200, 200), {}),
    "enet_b0_8_best_vgaf": ("enet_b0_8_best_vgaf", {}, (1, 3, 64, 64), {}),
    "enet_b0_8_va_mtl": ("enet_b0_8_va_mtl", {}, (1, 3, 64, 64), {}),
    "enet_b2_8": ("enet_b2_8", {}, (1, 3, 64, 64), {}),
}


def build(case: str):
    """``(model in eval mode, input, extra kwargs)`` of one case, seeded as the fixture was written."""
    from emovid.models import create_model

    name, overrides, shape, extra = CASES[case]
    torch.manual_seed(0)
    model = create_model(name, **overrides).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    kwargs = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in extra.items()}
    return model, x, kwargs


def pooled_now(model, x, **kwargs) -> torch.Tensor:
    """The pooled embedding with whichever API the installed emovid has."""
    from emovid.models import base

    if hasattr(base, "pooled"):
        return base.pooled(model, x, **kwargs)
    return model.forward_features(x, **kwargs)  # before the contract: forward_features was pooled


def forward_now(model, x, **kwargs) -> torch.Tensor:
    """``model(x)``; with ``lengths`` the logits of the length-aware pooled embedding."""
    if not kwargs:
        return model(x)
    if hasattr(model, "get_classifier"):  # the contract: forward_head takes the unpooled features
        return model.forward_head(model.forward_features(x, **kwargs), **kwargs)
    return model.forward_head(model.forward_features(x, **kwargs))  # before: forward_head took the pooled vector


def main() -> int:
    arrays: dict[str, np.ndarray] = {}
    torch.set_num_threads(2)
    with torch.no_grad():
        for case in CASES:
            model, x, kwargs = build(case)
            arrays[f"{case}/pooled"] = pooled_now(model, x, **kwargs).float().numpy()
            arrays[f"{case}/forward"] = forward_now(model, x, **kwargs).float().numpy()
            print(case, arrays[f"{case}/forward"].shape, arrays[f"{case}/pooled"].shape, flush=True)
    arrays["__spec__"] = np.array(json.dumps(CASES))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
