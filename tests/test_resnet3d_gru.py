"""VAERR front-end (3D-conv stem + ResNet-18 per frame + GRU): shapes, sequence outputs, and checkpoint layouts.

Layouts come from ``tests/fixtures/vaerr_keys/`` (key names and shapes of the reference VAERR / lipreading models,
generated once by ``tools/gen_vaerr_fixtures.py``); weights are rebuilt from the key names with the formula below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from emovid.errors import ModelError
from emovid.models import create_model
from emovid.models.base import pooled
from emovid.models.resnet3d_gru import vaerr_filter_fn

FIX = Path(__file__).parent / "fixtures" / "vaerr_keys"

# The generator's formulas (tools/fixture_weights.py), imported so tests and fixtures cannot drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from fixture_weights import formula_tensor  # noqa: E402


def fixture(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def layout_state_dict(name: str) -> dict[str, torch.Tensor]:
    return {k: formula_tensor(k, s) for k, s in fixture(name)["keys"].items()}


def backbone_keys(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if k.startswith(("frontend3D.", "trunk."))}


@pytest.fixture(scope="module")
def vaerr_sd():
    return layout_state_dict("vaerr_emotion_model_video.json")


# ---- shapes and sequence outputs ------------------------------------------------------------------------------


def test_tiny_shapes_and_head():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 5, 32, 32)
    gru = create_model("test_resnet18_3dstem_gru").eval()
    assert gru.num_features == 16  # 2 directions x 8 hidden
    assert gru.forward_sequence(x).shape == (2, 5, 16)
    assert pooled(gru, x).shape == (2, 16)
    assert torch.allclose(gru(x), gru.forward_sequence(x).mean(1), atol=1e-6)  # no head: embedding
    front = create_model("test_resnet18_3dstem").eval()
    assert front.num_features == 32
    assert front.forward_sequence(x).shape == (2, 5, 32)
    torch.testing.assert_close(pooled(front, x), front.forward_sequence(x).mean(1))
    cls = create_model("test_resnet18_3dstem_gru", num_classes=2).eval()
    assert cls(x).shape == (2, 2)
    # per-frame valence/arousal: the head applies to every frame
    assert cls.get_classifier()(cls.forward_sequence(x)).shape == (2, 5, 2)


def test_time_axis_keeps_its_length_and_full_size_dims():
    m = create_model("resnet18_3dstem_gru").eval()
    assert m.num_features == 512 and m.pretrained_cfg.input_size == (88, 88) and m.pretrained_cfg.in_chans == 1
    with torch.no_grad():
        assert m.forward_sequence(torch.randn(1, 1, 3, 88, 88)).shape == (1, 3, 512)


def test_lengths_ignore_padding():
    """A zero-padded clip with ``lengths`` gives exactly the features of the unpadded clip (packed GRU, mean)."""
    torch.manual_seed(1)
    m = create_model("test_resnet18_3dstem_gru").eval()
    a = torch.randn(1, 1, 6, 32, 32)
    b = torch.randn(1, 1, 4, 32, 32)
    padded = torch.cat([a, torch.cat([b, torch.zeros(1, 1, 2, 32, 32)], 2)])
    with torch.no_grad():
        seq = m.forward_sequence(padded, lengths=torch.tensor([6, 4]))
        feats = pooled(m, padded, lengths=torch.tensor([6, 4]))
        torch.testing.assert_close(seq[1, :4], m.forward_sequence(b)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seq[0], m.forward_sequence(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats[1], pooled(m, b)[0], atol=1e-5, rtol=1e-5)
        assert torch.all(seq[1, 4:] == 0)


def test_rgb_clip_into_greyscale_model_uses_luma():
    torch.manual_seed(2)
    m = create_model("test_resnet18_3dstem").eval()
    rgb = torch.rand(1, 3, 3, 32, 32)
    grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(pooled(m, rgb), pooled(m, grey))
    with pytest.raises(ModelError, match=r"\[B, C, T, H, W\]"):
        pooled(m, torch.rand(1, 3, 32, 32))


def test_gradients_reach_every_parameter():
    torch.manual_seed(3)
    m = create_model("test_resnet18_3dstem_gru", num_classes=2, relu_type="prelu").train()
    out = m.get_classifier()(m.forward_sequence(torch.randn(2, 1, 4, 32, 32)))
    out.pow(2).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert m.frontend3D[0].weight.grad.abs().sum() > 0


# ---- reference layouts -----------------------------------------------------------------------------------------


def test_vaerr_layout_loads_strictly_and_matches_reference_outputs(vaerr_sd, tmp_path):
    """VAERR's EmotionModelVideo state dict (gru2 dropped, gru.fc -> head) reproduces its per-frame outputs."""
    ref = fixture("vaerr_emotion_model_video.json")["reference_output"]
    path = tmp_path / "vaerr.pth"
    torch.save({"state_dict": vaerr_sd, "epoch": 3}, path)  # VAERR's CheckpointSaver wraps weights this way
    m = create_model("resnet18_3dstem_gru", pretrained=str(path), num_classes=42).eval()
    assert m.load_report.ok and m.load_report.loaded == len(vaerr_sd) - 18  # the 18 gru2.* tensors are unused
    x = torch.randn((1, 5, 88, 88), generator=torch.Generator().manual_seed(0)).unsqueeze(1)  # [B, T, H, W] -> C=1
    with torch.no_grad():
        frames = m.frame_embeddings(x)
        logits = m.get_classifier()(m.forward_sequence(x))
    assert list(logits.shape) == ref["gru_fc_shape"]
    torch.testing.assert_close(logits.flatten(), torch.tensor(ref["gru_fc"]), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(frames[0, :, :8].flatten(), torch.tensor(ref["trunk_first8"]), atol=2e-5, rtol=1e-4)
    assert frames.sum().item() == pytest.approx(ref["trunk_sum"], rel=1e-5)


def test_different_head_needs_size_mismatch(vaerr_sd, tmp_path):
    path = tmp_path / "vaerr.pth"
    torch.save({"state_dict": vaerr_sd}, path)
    with pytest.raises(ModelError, match="head.weight"):
        create_model("resnet18_3dstem_gru", pretrained=str(path), num_classes=2)
    m = create_model("resnet18_3dstem_gru", pretrained=str(path), num_classes=2, allow_size_mismatch=True)
    assert sorted(k for k, _, _ in m.load_report.mismatched) == ["head.bias", "head.weight"]
    torch.testing.assert_close(m.state_dict()["gru.gru.weight_hh_l1"], vaerr_sd["gru.gru.weight_hh_l1"])


def test_dino_checkpoint_loads_student_backbone(vaerr_sd, tmp_path):
    """DINO saves {'student': DDP(MultiCropWrapper).state_dict(), 'teacher': ...}; VAERR reads 'student'."""
    body = backbone_keys(vaerr_sd)
    student = {f"module.backbone.{k}": v for k, v in body.items()}
    student["module.head.mlp.0.weight"] = torch.zeros(8, 512)
    student["module.head.last_layer.weight_g"] = torch.ones(8, 1)
    teacher = {f"backbone.{k}": v + 1 for k, v in body.items() if v.is_floating_point()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"student": student, "teacher": teacher, "epoch": 10}, path)
    m = create_model("resnet18_3dstem", pretrained=str(path))  # strict: every front-end tensor present
    assert m.load_report.ok
    torch.testing.assert_close(m.state_dict()["trunk.layer4.1.conv2.weight"], body["trunk.layer4.1.conv2.weight"])


def test_byol_learner_state_dict_prefers_online_network(vaerr_sd):
    """lucidrains' BYOL keeps net.*, online_encoder.net.* (same tensors) and an EMA target_encoder.net.*."""
    body = backbone_keys(vaerr_sd)
    sd = {}
    for k, v in body.items():
        sd[f"net.{k}"] = v
        sd[f"online_encoder.net.{k}"] = v
        sd[f"target_encoder.net.{k}"] = v * 0.5 if v.is_floating_point() else v
    sd["online_encoder.projector.net.0.weight"] = torch.zeros(4096, 512)
    sd["online_predictor.net.0.weight"] = torch.zeros(4096, 256)
    m = create_model("resnet18_3dstem")
    out = vaerr_filter_fn(sd, m)
    assert set(out) == set(body)
    torch.testing.assert_close(out["frontend3D.0.weight"], body["frontend3D.0.weight"])
    # only an EMA copy present: use it
    ema = vaerr_filter_fn({k: v for k, v in sd.items() if k.startswith("target_encoder.")}, m)
    torch.testing.assert_close(ema["frontend3D.0.weight"], body["frontend3D.0.weight"] * 0.5)


def test_lipreading_lrw_checkpoint_front_end(tmp_path):
    """mpc001's LRW models (Swish, MS-TCN back-end) keep weights under 'model_state_dict'; the TCN is dropped."""
    sd = layout_state_dict("lipreading_resnet18_mstcn.json")
    path = tmp_path / "lrw_resnet18_mstcn_video.pth"
    torch.save({"model_state_dict": sd, "epoch_idx": 80}, path)
    front = create_model("resnet18_3dstem", pretrained=str(path), relu_type="swish")
    assert front.load_report.ok and front.load_report.loaded == len(backbone_keys(sd))
    gru = create_model("resnet18_3dstem_gru", pretrained=str(path), relu_type="swish", strict=False)
    assert gru.load_report.missing and all(k.startswith("gru.gru.") for k in gru.load_report.missing)
    assert not gru.load_report.unexpected
    with pytest.raises(ModelError, match="missing"):
        create_model("resnet18_3dstem_gru", pretrained=str(path), relu_type="swish")


def test_prelu_checkpoint_needs_prelu_model(tmp_path):
    sd = layout_state_dict("lipreading_resnet18_prelu_tcn.json")
    path = tmp_path / "prelu.pth"
    torch.save({"model_state_dict": sd}, path)
    with pytest.raises(ModelError, match="relu_type='prelu'"):
        create_model("resnet18_3dstem", pretrained=str(path))
    m = create_model("resnet18_3dstem", pretrained=str(path), relu_type="prelu")
    assert m.load_report.ok
    torch.testing.assert_close(m.state_dict()["trunk.layer2.0.relu1.weight"], sd["trunk.layer2.0.relu1.weight"])


def test_one_channel_stem_into_rgb_model_gives_same_features():
    torch.manual_seed(4)
    grey_model = create_model("test_resnet18_3dstem").eval()
    rgb_model = create_model("test_resnet18_3dstem", in_chans=3).eval()
    assert rgb_model.pretrained_cfg.in_chans == 3 and len(rgb_model.pretrained_cfg.mean) == 3
    sd = vaerr_filter_fn({"netG": grey_model.state_dict()}, rgb_model)  # LiRA-style wrapper key
    assert sd["frontend3D.0.weight"].shape[1] == 3
    rgb_model.load_state_dict(sd)
    clip = torch.rand(1, 1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            pooled(rgb_model, clip.expand(-1, 3, -1, -1, -1)),
            pooled(grey_model, clip),
            atol=1e-5,
            rtol=1e-5,
        )
    back = vaerr_filter_fn(rgb_model.state_dict(), grey_model)
    torch.testing.assert_close(back["frontend3D.0.weight"], grey_model.state_dict()["frontend3D.0.weight"])


def test_checkpoint_without_front_end_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.layer.0.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ModelError, match="no frontend3D/trunk keys"):
        create_model("test_resnet18_3dstem", pretrained=str(path))
