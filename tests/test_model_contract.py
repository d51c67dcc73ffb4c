"""Every registered backbone keeps the timm-style contract of :class:`emovid.models.base.Backbone`.

A registry-wide sweep, as timm's ``tests/test_models.py``: every ``test_*`` model plus the small real ones, on
inputs built from their ``pretrained_cfg``, through ``forward_features`` (unpooled) / ``forward_head`` /
``forward_intermediates`` / ``get_classifier`` / ``reset_classifier`` / ``group_matcher`` and the layer-wise LR
decay that reads the matcher.
"""

from __future__ import annotations

import copy
import functools
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from emovid.models import Backbone, create_model, list_models, pooled

# small real models, with the input side to run them at (None: their own)
REAL = {"fer_mini_xception": None, "x3d_xs": 64}
MODELS = list_models("test_*") + sorted(REAL)
B = 2


def _layer_decay_fns():
    try:
        from emovid.train.optim import layer_ids, param_groups
    except ImportError:  # the training engine's new home
        from emovid.engine.optim import layer_ids, param_groups
    return layer_ids, param_groups


@functools.cache
def _built(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    cfg = model.pretrained_cfg
    h, w = cfg.input_size
    if REAL.get(name):
        h = w = REAL[name]
    shape = (B, cfg.in_chans, h, w) if cfg.num_frames == 1 else (B, cfg.in_chans, cfg.num_frames, h, w)
    return model, torch.randn(shape, generator=torch.Generator().manual_seed(1))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_the_sweep_covers_every_family():
    from emovid.models import FAMILIES
    from emovid.models.registry import get_model_entry

    assert {get_model_entry(n).family for n in list_models("test_*")} == set(FAMILIES)
    assert all(isinstance(_built(n)[0], Backbone) for n in MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_head_of_features(name):
    model, x = _built(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim >= 3, "forward_features gives unpooled tokens or maps"
        assert feats.shape[0] == B
        _close(model(x), model.forward_head(feats))
        emb = model.forward_head(feats, pre_logits=True)
        assert emb.shape == (B, model.num_features)
        _close(pooled(model, x), emb)


@pytest.mark.parametrize("name", MODELS)
def test_forward_intermediates(name):
    model, x = _built(name)
    n = len(model.feature_blocks())
    assert n >= 2
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        _close(final, model.forward_features(x))
        assert len(inter) == n and all(isinstance(t, torch.Tensor) for t in inter)
        assert all(t.shape[0] % B == 0 for t in inter)  # [B, ...] or per frame [B * T, ...]
        _, last = model.forward_intermediates(x, indices=1)
        _, ends = model.forward_intermediates(x, indices=[0, -1])
    assert len(last) == 1 and torch.equal(last[0], inter[-1])
    assert len(ends) == 2 and torch.equal(ends[0], inter[0]) and torch.equal(ends[1], inter[-1])
    with pytest.raises(IndexError):
        model.forward_intermediates(x, indices=[n])


@pytest.mark.parametrize("name", MODELS)
def test_get_and_reset_classifier(name):
    model, x = _built(name)
    model = copy.deepcopy(model)
    assert model.get_classifier() is model.get_submodule(model.classifier_name)
    with torch.no_grad():
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        _close(model(x), pooled(model, x))
        assert model(x).shape == (B, model.num_features)
        model.reset_classifier(5)
        assert model.num_classes == 5 and sum(p.numel() for p in model.get_classifier().parameters()) > 0
        assert model(x).shape == (B, 5)
        assert pooled(model, x).shape == (B, model.num_features)
        model.reset_classifier(3)
        assert model(x).shape == (B, 3)
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith(model.classifier_name + ".") for n in names)


@pytest.mark.parametrize("coarse", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_group_matcher_covers_every_parameter_once(name, coarse):
    model, _ = _built(name)
    model = copy.deepcopy(model)
    model.reset_classifier(4)  # a model built without a head still has its head group
    m = model.group_matcher(coarse=coarse)
    assert set(m) == {"stem", "blocks", "head"}
    patterns = [("stem", re.compile(m["stem"])), ("head", re.compile(m["head"]))]
    patterns += [(f"blocks[{i}]", re.compile(p)) for i, (p, _) in enumerate(m["blocks"])]
    seen = {"stem": 0, "head": 0, "blocks": 0}
    for pname, _ in model.named_parameters():
        hits = [g for g, p in patterns if p.match(pname)]
        assert len(hits) == 1, f"{pname} matches {hits or 'no group'}"
        seen[hits[0].split("[")[0]] += 1
    assert all(seen.values()), seen


@pytest.mark.parametrize("name", MODELS)
def test_layer_decay_gives_each_layer_its_own_lr(name):
    layer_ids, param_groups = _layer_decay_fns()
    model, _ = _built(name)
    bb = copy.deepcopy(model)
    task = nn.Module()
    task.feature_extractor, task.head = bb, nn.Linear(bb.num_features, 2)
    names = [n for n, _ in bb.named_parameters()]
    ids, num_blocks = layer_ids(bb, names)
    assert num_blocks >= 2 and set(ids.values()) >= set(range(num_blocks + 1))
    cfg = SimpleNamespace(lr=1e-3, head_lr=None, layer_decay=0.5, weight_decay=0.05, weight_decay_1d=False)
    groups = param_groups(task, cfg, cfg.lr, train_backbone=True)
    lr_of_layer: dict[int, set[float]] = {}
    for g in groups:  # the task head learns with the last layer (num_blocks + 1)
        lr_of_layer.setdefault(g["layer"], set()).add(g["lr"])
    assert all(len(v) == 1 for v in lr_of_layer.values())
    lrs = [next(iter(lr_of_layer[i])) for i in sorted(lr_of_layer)]
    assert len(set(lrs)) == len(lrs) == num_blocks + 2 and lrs == sorted(lrs)
    assert lrs[-1] == pytest.approx(cfg.lr) and lrs[0] == pytest.approx(cfg.lr * 0.5 ** (num_blocks + 1))
    assert sum(len(g["params"]) for g in groups) == len(names) + 2
