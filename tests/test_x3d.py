"""X3D: pytorchvideo's checkpoint layout, outputs equal to pytorchvideo's, clip geometry, weights by tag.

The layouts and reference outputs in ``tests/fixtures/x3d_keys/`` were generated once from pytorchvideo 0.1.5's own
``create_x3d`` by ``tools/gen_x3d_key_fixture.py`` (its docstring has the command).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

from emovid.errors import ModelError, WeightsUnavailableError
from emovid.models import create_model, create_transform
from emovid.models.base import pooled
from emovid.video.transforms import to_tensor

FIXTURES = Path(__file__).parent / "fixtures" / "x3d_keys"
VARIANTS = ["x3d_xs", "x3d_s", "x3d_m", "x3d_l"]


def load_layout(name: str) -> dict:
    with gzip.open(FIXTURES / f"{name}.json.gz", "rt") as f:
        return json.load(f)


def seeded_state_dict(keys: list, seed: int = 0) -> dict:
    """The weight recipe of tools/gen_x3d_key_fixture.py, rebuilt from key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, dtype in sorted((k, tuple(s), d) for k, s, d in keys):
        if dtype == "int64":
            out[name] = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_var"):
            out[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            out[name] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and name.endswith("weight"):
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            out[name] = 0.1 * torch.randn(shape, generator=g)
        else:
            out[name] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return out


def random_checkpoint(layout: dict, path: Path) -> dict:
    """A ``.pyth`` shaped like the released ones: ``{"model_state": ..., ...}`` with random tensors."""
    sd = seeded_state_dict(layout["keys"], seed=7)
    sd = {k: sd[k] + 3 if k.endswith("num_batches_tracked") else sd[k] for k, _, _ in layout["keys"]}
    torch.save({"model_state": sd, "epoch": 300, "optimizer_state": {}}, path)
    return sd


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_layout_equals_pytorchvideo(name):
    layout = load_layout(name)
    model = create_model(name)
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == layout["keys"]  # same keys, shapes, dtypes, and order
    assert sum(p.numel() for p in model.parameters()) == layout["num_params"]


@pytest.mark.parametrize("name", VARIANTS)
def test_released_checkpoint_layout_loads_strictly(name, tmp_path):
    layout = load_layout(name)
    path = tmp_path / f"{name.upper()}.pyth"
    sd = random_checkpoint(layout, path)
    model = create_model(name, pretrained=str(path), num_classes=400)
    assert model.load_report.ok and model.load_report.loaded == len(layout["keys"])
    own = model.state_dict()
    for k in (layout["keys"][0][0], "blocks.5.proj.weight", "blocks.4.res_blocks.0.branch2.norm_b.1.block.2.bias"):
        assert torch.equal(own[k], sd[k])


def test_feature_extractor_and_new_classifier_from_kinetics_checkpoint(tmp_path):
    layout = load_layout("x3d_s")
    path = tmp_path / "X3D_S.pyth"
    sd = random_checkpoint(layout, path)
    feat = create_model("x3d_s", pretrained=str(path), num_classes=0).eval()
    assert "blocks.5.proj.weight" not in feat.state_dict() and feat.load_report.ok
    assert torch.equal(feat.state_dict()["blocks.5.pool.post_conv.weight"], sd["blocks.5.pool.post_conv.weight"])
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(feat(x), pooled(feat, x))  # no classifier: forward = features

    torch.manual_seed(0)
    seven = create_model("x3d_s", pretrained=str(path), num_classes=7)
    assert seven.state_dict()["blocks.5.proj.weight"].shape == (7, 2048)
    assert torch.equal(seven.state_dict()["blocks.1.res_blocks.0.branch1_conv.weight"], sd[layout["keys"][7][0]])


def test_checkpoint_of_another_size_is_refused(tmp_path):
    path = tmp_path / "X3D_L.pyth"
    random_checkpoint(load_layout("x3d_l"), path)
    with pytest.raises(ModelError, match="missing|unexpected"):
        create_model("x3d_s", pretrained=str(path))


def test_outputs_equal_pytorchvideo_reference():
    ref = torch.load(FIXTURES / "x3d_xs_reference.pt")
    model = create_model("x3d_xs").eval()
    model.load_state_dict(seeded_state_dict(load_layout("x3d_xs")["keys"], ref["weight_seed"]), strict=True)
    # Same weights and input as the reference run, not bit for bit: torch.randn's vectorised (AVX2/AVX-512) and
    # scalar Box-Muller kernels round differently (up to ~15 float32 ulps of an element, ~1 ulp on average), so
    # the sums agree to 4 float32 ulps of the sum of |terms| (another seed would be off by ~sqrt(n)).
    sd = [v.double() for v in model.state_dict().values() if v.is_floating_point()]
    tol = 4 * 2.0**-23 * float(sum(v.abs().sum() for v in sd))
    assert float(sum(v.sum() for v in sd)) == pytest.approx(ref["weight_sum"], abs=tol)
    x = torch.randn(ref["input_shape"], generator=torch.Generator().manual_seed(ref["input_seed"])).double()
    assert float(x.sum()) == pytest.approx(ref["input_sum"], abs=4 * 2.0**-23 * float(x.abs().sum()))
    x = x.float()
    with torch.no_grad():
        feats = pooled(model, x)
        logits = model(x)
    assert feats.shape == (1, 2048) and (feats > 0).any()
    torch.testing.assert_close(feats, ref["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits.softmax(-1), ref["probs"], atol=1e-6, rtol=1e-4)


def test_adaptive_pool_matches_fixed_kernel_pool_at_native_size_and_accepts_any_geometry():
    torch.manual_seed(0)
    model = create_model("test_x3d").eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        pool = model.blocks[5].pool
        fmap = pool.pre_act(pool.pre_norm(pool.pre_conv(model.forward_trunk(x))))
        # pytorchvideo: AvgPool3d(kernel=(T, ceil(H/32), ceil(W/32)), stride=1) then the 1x1x1 post_conv
        avg = torch.nn.functional.avg_pool3d(fmap, (4, 1, 1), stride=1)
        expected = torch.relu(pool.post_conv(avg)).flatten(1)
        torch.testing.assert_close(pooled(model, x), expected)
        for shape in [(1, 3, 7, 48, 80), (1, 3, 1, 33, 33), (3, 3, 16, 64, 32)]:
            assert pooled(model, torch.randn(shape)).shape == (shape[0], 32)


def test_channels_last_is_only_a_speed_choice():
    torch.manual_seed(0)
    a = create_model("test_x3d").eval()
    b = create_model("test_x3d", channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pooled(a, x), pooled(b, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "frames", "stride", "crop", "short"),
    [("x3d_xs", 4, 12, 160, 182), ("x3d_s", 13, 6, 160, 182), ("x3d_m", 16, 5, 224, 256), ("x3d_l", 16, 5, 312, 356)],
)
def test_pretrained_cfg_and_transform(name, frames, stride, crop, short):
    model = create_model(name, num_classes=0)
    cfg = model.pretrained_cfg
    assert (cfg.num_frames, cfg.frame_stride, cfg.input_size, cfg.short_side) == (frames, stride, (crop, crop), short)
    assert cfg.mean == (0.45, 0.45, 0.45) and cfg.std == (0.225, 0.225, 0.225) and not cfg.face_crop
    src = cfg.weights["k400"]
    fname = f"X3D_{name[4:].upper()}.pyth"
    assert src.url == f"https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/{fname}"
    assert src.filename == fname and src.license == "Apache-2.0" and cfg.default_tag == "k400"
    assert model.num_features == 2048
    # 240x320 frames of constant grey 153: resized short side, centre crop, (0.6 - 0.45) / 0.225
    clip = create_transform(model)(to_tensor(torch.full((2, 240, 320, 3), 153, dtype=torch.uint8)))
    assert clip.shape == (3, 2, crop, crop)
    torch.testing.assert_close(clip, torch.full_like(clip, (0.6 - 0.45) / 0.225), atol=1e-5, rtol=0)


def test_geometry_overrides():
    model = create_model("x3d_m", num_frames=8, input_size=112, num_classes=0)
    cfg = model.pretrained_cfg
    assert (cfg.num_frames, cfg.input_size, cfg.short_side) == (8, (112, 112), 128)
    assert create_model("x3d_m").pretrained_cfg.num_frames == 16  # registry default unchanged


def test_k400_tag_offline_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as e:
        create_model("x3d_s", pretrained="k400")
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_S.pyth" in msg
    assert str(tmp_path / "weights" / "X3D_S.pyth") in msg
    # once the file is where the message says, the tag (and pretrained=True) load it
    (tmp_path / "weights").mkdir()
    sd = random_checkpoint(load_layout("x3d_s"), tmp_path / "weights" / "X3D_S.pyth")
    model = create_model("x3d_s", pretrained=True)
    assert model.load_report.ok
    assert torch.equal(model.state_dict()["blocks.5.proj.bias"], sd["blocks.5.proj.bias"])


def test_fine_tuned_emovid_checkpoint_round_trip(tmp_path):
    """A fine-tuned X3D saved as a plain state dict (safetensors) loads back with the same outputs."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = create_model("test_x3d", num_classes=3).train()
    model(torch.randn(4, 3, 4, 32, 32)).sum().backward()  # BN running stats move away from init
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    again = create_model("test_x3d", pretrained=f"local-dir:{tmp_path}", num_classes=3).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
