"""Every registered model behind one registry: tiny variants train and embed, preprocessing follows the
``pretrained_cfg``, weights resolve from tags / files / folders / URLs / hub ids, and loading reports what
did not fit. Parametrised over whatever is registered, so new families are covered when they register."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from emovid.errors import InputNotFoundError, ModelError, WeightsUnavailableError
from emovid.models import (
    PretrainedCfg,
    WeightSource,
    create_model,
    create_transform,
    get_model_entry,
    list_models,
    model_info,
)
from emovid.models.base import pooled
from emovid.models.hub import download_url, load_state_dict, resolve
from emovid.video.transforms import to_tensor

TINY = list_models("test_*")
RELEASED = list_models(include_test=False)


def example_input(cfg: PretrainedCfg, batch: int, seed: int = 0) -> torch.Tensor:
    """Input at the model's native geometry: ``[B, C, T, H, W]``, or ``[B, C, H, W]`` for 1-frame models."""
    h, w = cfg.input_size
    shape = (batch, cfg.in_chans, h, w) if cfg.num_frames == 1 else (batch, cfg.in_chans, cfg.num_frames, h, w)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_every_family_has_a_tiny_variant():
    assert TINY, "no test_* models registered"
    families = {get_model_entry(n).family for n in RELEASED}
    tiny_families = {get_model_entry(n).family for n in TINY}
    assert families <= tiny_families, f"families without a test_* variant: {sorted(families - tiny_families)}"


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    x = example_input(model.pretrained_cfg, 2).requires_grad_(True)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the loss reaches the input through the whole network
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    without = [n for n, p in params if p.grad is None]
    assert len(without) <= 0.1 * len(params), f"parameters that get no gradient: {without[:8]}"
    assert all(torch.isfinite(p.grad).all() for _, p in params if p.grad is not None)


@pytest.mark.parametrize("name", TINY)
def test_tiny_embedding_shape_and_feature_extractor(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=0).eval()
    assert isinstance(model.num_features, int) and model.num_features > 0
    x = example_input(model.pretrained_cfg, 2)
    with torch.no_grad():
        emb = pooled(model, x)
        assert emb.shape == (2, model.num_features)
        torch.testing.assert_close(model(x), emb)  # num_classes=0: forward returns the embedding
        # eval mode is deterministic and batch-independent
        torch.testing.assert_close(pooled(model, x[:1]), emb[:1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", TINY)
def test_transform_follows_pretrained_cfg_and_feeds_the_model(name):
    model = create_model(name, num_classes=0).eval()
    cfg = model.pretrained_cfg
    h, w = cfg.input_size
    frames = max(cfg.num_frames, 1)
    # frames larger than the input, in another aspect ratio; a constant grey level v maps to (v/255 - mean) / std
    raw = torch.full((frames, 2 * h + 6, 3 * w + 4, 3), 170, dtype=torch.uint8)
    clip = create_transform(model)(to_tensor(raw))
    # 1-channel models may take RGB (converted inside, as resnet3d_gru does); the stats then apply to every channel
    assert clip.shape[-2:] == (h, w) and clip.shape[0] in (cfg.in_chans, 3)
    assert clip.shape[1] == frames
    expect = torch.tensor([(170 / 255 - m) / s for m, s in zip(cfg.mean, cfg.std, strict=True)])
    torch.testing.assert_close(clip.mean(dim=(1, 2, 3)), expect.expand(clip.shape[0]), atol=1e-4, rtol=0)
    batch = clip.unsqueeze(0) if cfg.num_frames > 1 else clip[:, 0].unsqueeze(0)
    with torch.no_grad():
        assert pooled(model, batch).shape == (1, model.num_features)
    # training transform: random crop of the same size from the configured short side
    train = create_transform(model, train=True, generator=torch.Generator().manual_seed(0))(to_tensor(raw))
    assert train.shape == clip.shape


@pytest.mark.parametrize("name", RELEASED)
def test_released_model_cfg_is_complete(name):
    cfg = get_model_entry(name).cfg
    assert cfg.num_frames >= 1 and cfg.frame_stride >= 1 and len(cfg.input_size) == 2
    assert len(cfg.mean) == len(cfg.std) and all(s > 0 for s in cfg.std)
    assert cfg.source, "pretrained_cfg.source should cite the paper / reference implementation"
    if cfg.default_tag is not None:
        assert cfg.default_tag in cfg.weights
    for tag, src in cfg.weights.items():
        assert src.url or src.hf_hub_id, f"{name}:{tag} has no URL or hub id"
        assert src.license and src.license != "unknown", f"{name}:{tag} has no licence"
        if src.url and src.url.startswith("file://"):  # weights shipped inside the package
            from urllib.parse import unquote, urlparse

            assert Path(unquote(urlparse(src.url).path)).is_file(), f"{name}:{tag} bundled file is missing"
        elif src.url:
            assert src.url.startswith("https://") and src.filename, f"{name}:{tag} URL needs https and a filename"


def test_unknown_model_error_names_the_command():
    with pytest.raises(ModelError, match=r"unknown model 'x3d_xxl'.*did you mean.*x3d_s.*emovid list-models"):
        create_model("x3d_xxl")
    with pytest.raises(ModelError, match="unknown model"):
        model_info("no_such_model")


def test_bad_option_is_a_model_error():
    with pytest.raises(ModelError, match="bad option"):
        create_model(TINY[0], no_such_option=1)


def test_list_models_pattern_and_test_variants():
    assert set(TINY) <= set(list_models())
    assert not set(TINY) & set(list_models(include_test=False))
    assert list_models("x3d_*") == ["x3d_l", "x3d_m", "x3d_s", "x3d_xs"]


# ---- resolving `pretrained=` ----------------------------------------------------------------------------------


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "cache" / "weights"


CFG = PretrainedCfg(
    weights={
        "demo": WeightSource(url="https://example.org/zoo/demo-weights.pth", filename="demo.pth", license="MIT"),
        "hub": WeightSource(hf_hub_id="someorg/somemodel", license="MIT"),
    },
    default_tag="demo",
)


def test_resolve_tag_offline_names_file_and_where_to_put_it(offline_cache):
    with pytest.raises(WeightsUnavailableError) as e:
        resolve("demo", CFG, "m")
    msg = str(e.value)
    assert "https://example.org/zoo/demo-weights.pth" in msg and str(offline_cache / "demo.pth") in msg
    assert e.value.path == str(offline_cache / "demo.pth")
    # placed there, it resolves without the network (also via pretrained=True -> default tag)
    offline_cache.mkdir(parents=True)
    (offline_cache / "demo.pth").write_bytes(b"x")
    for spec in ("demo", True):
        r = resolve(spec, CFG, "m")
        assert (r.path, r.kind) == (offline_cache / "demo.pth", "file")


def test_resolve_local_file_and_folder(tmp_path, offline_cache):
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert (resolve(str(f), CFG).path, resolve(str(f), CFG).kind) == (f, "file")
    assert (resolve(f"local-dir:{tmp_path}", CFG).path, resolve(f"local-dir:{tmp_path}", CFG).kind) == (tmp_path, "dir")
    assert resolve(str(tmp_path), CFG).kind == "dir"
    with pytest.raises(InputNotFoundError, match="no such folder"):
        resolve(f"local-dir:{tmp_path / 'nope'}", CFG)
    with pytest.raises(ModelError, match=r"not a file, a folder, a URL, a hub id or a tag.*tags: demo, hub"):
        resolve(str(tmp_path / "missing.pth"), CFG, "m")


def test_resolve_url_with_sha256(offline_cache):
    data = b"weights-bytes"
    sha = hashlib.sha256(data).hexdigest()
    url = "https://example.org/x/model-123.pth"
    with pytest.raises(WeightsUnavailableError, match=r"model-123\.pth"):
        resolve(f"{url}#sha256={sha}", CFG)
    offline_cache.mkdir(parents=True)
    (offline_cache / "model-123.pth").write_bytes(data)
    assert resolve(f"{url}#sha256={sha}", CFG).path == offline_cache / "model-123.pth"
    with pytest.raises(ModelError, match="checksum mismatch"):
        resolve(f"{url}#sha256={'0' * 64}", CFG)


def test_download_url_verifies_sha256(tmp_path, monkeypatch):
    """The real download path (urllib), fed a file:// URL so nothing leaves the machine."""
    monkeypatch.delenv("EMOVID_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "remote.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    with pytest.raises(ModelError, match="does not match its sha256"):
        download_url(src.as_uri(), "f" * 64, "bad.bin")
    assert not (tmp_path / "cache" / "weights" / "bad.bin").exists()  # a bad download is not kept
    p = download_url(src.as_uri(), good, "good.bin")
    assert p == tmp_path / "cache" / "weights" / "good.bin" and p.read_bytes() == b"payload"
    assert not [q for q in p.parent.iterdir() if q.name.startswith(".")]  # no temp files left behind


def test_resolve_hf_id_offline_says_how_to_fetch(offline_cache):
    for spec in ("someorg/somemodel", "hf-hub:someorg/somemodel", "hub"):
        with pytest.raises(WeightsUnavailableError, match=r"`hf download someorg/somemodel`.*local-dir:"):
            resolve(spec, CFG, "m")
    with pytest.raises(WeightsUnavailableError, match=r"`hf download someorg/somemodel weights\.bin`"):
        resolve("hf-hub:someorg/somemodel/weights.bin", CFG, "m")


def test_unknown_tag_lists_the_tags():
    with pytest.raises(ModelError, match=r"tags: demo, hub"):
        resolve("nonexistent_tag", CFG, "m")
    with pytest.raises(ModelError, match="no default pretrained weights"):
        resolve(True, PretrainedCfg(), "m")


# ---- loading reports -------------------------------------------------------------------------------------------


class Small(nn.Module):
    def __init__(self, out: int = 3):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, out)


def test_load_state_dict_reports_missing_unexpected_and_mismatched():
    src = Small(out=7).state_dict()
    src["extra.weight"] = torch.ones(2)
    del src["a.bias"]
    model = Small(out=3)
    with pytest.raises(
        ModelError, match=r"2 tensors differ in shape \(b\.weight \(7, 5\) vs \(3, 5\).*allow_size_mismatch"
    ):
        load_state_dict(model, src, source="ckpt.pth")
    before = model.b.weight.clone()
    with pytest.raises(ModelError, match=r"1 missing \(a\.bias\), 1 unexpected \(extra\.weight\)"):
        load_state_dict(model, src, allow_size_mismatch=True, source="ckpt.pth")
    rep = load_state_dict(model, src, strict=False, allow_size_mismatch=True, source="ckpt.pth")
    assert rep.missing == ["a.bias"] and rep.unexpected == ["extra.weight"]
    assert rep.mismatched == [("b.weight", (7, 5), (3, 5)), ("b.bias", (7,), (3,))]
    assert rep.loaded == 1 and not rep.ok
    assert torch.equal(model.a.weight, src["a.weight"]) and torch.equal(model.b.weight, before)
    assert "2 skipped for shape" in str(rep) and "1 missing (a.bias)" in str(rep)


@pytest.mark.parametrize("name", TINY)
def test_tiny_checkpoint_round_trip_with_size_mismatch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    same = create_model(name, pretrained=str(tmp_path / "ckpt.pth"), num_classes=5).eval()
    assert same.load_report.ok
    x = example_input(model.pretrained_cfg, 1)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x))
    # another head size (VAERR's --allow-size-mismatch case): the trunk loads, the head stays freshly made
    other = create_model(
        name, pretrained=str(tmp_path / "ckpt.pth"), num_classes=2, strict=False, allow_size_mismatch=True
    ).eval()
    rep = other.load_report
    new = other.state_dict()
    head_keys = {k for k, v in model.state_dict().items() if k not in new or new[k].shape != v.shape}
    assert head_keys, "num_classes does not change any tensor"
    # only classifier tensors may be skipped (reported as mismatched, or dropped by the family's filter_fn)
    assert not rep.unexpected and set(rep.missing) | {m[0] for m in rep.mismatched} <= head_keys
    with torch.no_grad():
        torch.testing.assert_close(pooled(other, x), pooled(model, x))
        assert other(x).shape == (1, 2)


def test_parameter_counts_are_positive_and_finite():
    for name in TINY:
        n = sum(p.numel() for p in create_model(name).parameters())
        assert 0 < n < 5e6 and math.isfinite(n), f"{name} is not tiny ({n} parameters)"


# ---- `emovid list-models` ----------------------------------------------------------------------------------------


def test_cli_list_models_table(capsys):
    from emovid.cli import main

    assert main(["list-models", "x3d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["name", "family", "params", "clip", "input", "face"]
    row = next(line for line in out if line.startswith("x3d_s "))
    assert row.split()[:7] == ["x3d_s", "x3d", "3.79M", "13x6", "160x160", "(short", "182)"]
    assert "k400*=dl.fbaipublicfiles.com/.../X3D_S.pyth" in row
    assert not any(line.startswith("test_") for line in out)
    assert main(["list-models", "x3d", "--all"]) == 0
    assert any(line.startswith("test_x3d ") for line in capsys.readouterr().out.splitlines())


def test_cli_list_models_json_and_no_match(capsys):
    import json

    from emovid.cli import main

    assert main(["list-models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(RELEASED)
    s = rows["x3d_s"]
    assert (s["params"], s["num_frames"], s["frame_stride"], s["input_size"]) == (3794274, 13, 6, [160, 160])
    assert s["weights"]["k400"]["url"].endswith("/X3D_S.pyth") and s["weights"]["k400"]["default"] is True
    assert s["face_crop"] is False and s["license"] == "Apache-2.0"
    assert main(["list-models", "no_such_*"]) == 1
    assert "no model matches 'no_such_*'" in capsys.readouterr().err
