"""Every cheap registered model computes today what it computed when ``model_outputs_ref.npz`` was written.

The fixture (``tools/gen_model_outputs_ref.py``) holds ``model(x)`` and the pooled embedding of each case on a seeded
model and a seeded input, recorded before the model API moved to the timm-style contract (``forward_features`` =
unpooled features, ``forward_head(..., pre_logits=True)`` = pooled embedding). Refactors of the model code must keep
both equal to 1e-5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gen_model_outputs_ref as gen  # noqa: E402

REF = np.load(ROOT / "tests" / "fixtures" / "model_outputs_ref.npz")
SPEC = json.loads(str(REF["__spec__"]))


def test_spec_matches_generator():
    assert {k: [v[0], v[1], list(v[2]), v[3]] for k, v in gen.CASES.items()} == SPEC


@pytest.mark.parametrize("case", sorted(SPEC))
def test_outputs_unchanged(case):
    from emovid.models.base import pooled

    model, x, kwargs = gen.build(case)
    with torch.no_grad():
        emb = pooled(model, x, **kwargs)
        # with lengths: the classifier on the length-aware pooled embedding; else plain forward
        out = model.forward_head(model.forward_features(x, **kwargs), **kwargs) if kwargs else model(x)
    for what, got in (("pooled", emb), ("forward", out)):
        ref = REF[f"{case}/{what}"]
        assert got.shape == ref.shape, what
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=0, err_msg=what)
        # random EfficientNets shrink activations to ~1e-13: check those relative to their own scale too
        scale = float(np.abs(ref).max())
        assert float(np.abs(got.numpy() - ref).max()) <= 1e-4 * scale + 1e-30, what
