"""VideoMAE: registry entries, forward/backward, and loading every published checkpoint layout.

The official layouts come from ``tests/fixtures/videomae_keys/`` (written by ``tools/gen_videomae_fixtures.py``
from MCG-NJU/VideoMAE's own model classes); the Hugging Face layouts from ``transformers``' ``save_pretrained``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emovid.errors import ModelError, WeightsUnavailableError
from emovid.models import create_model, get_model_entry, list_models, model_info
from emovid.models.base import pooled
from emovid.models.hub import download_url, load_pretrained, load_state_dict, resolve
from emovid.models.videomae import VideoMAE, _filter_videomae, convert_videomae_state_dict
from emovid.video.transforms import IMAGENET_MEAN, IMAGENET_STD

FIX = Path(__file__).parent / "fixtures" / "videomae_keys"
# test_videomae's geometry, as a transformers config
TINY_HF = dict(
    image_size=32,
    patch_size=16,
    num_frames=4,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)


def _layout(name: str) -> dict:
    return json.loads((FIX / f"{name}.json").read_text())


def _random_sd(keys: list, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in keys}


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every tensor random (LayerNorms near 1), so a tensor loaded into the wrong place changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0)
            )


def _clip(b: int = 2, t: int = 4, s: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, t, s, s, generator=torch.Generator().manual_seed(seed))


# ---- registry --------------------------------------------------------------------------------------------------


def test_registered_names_and_pretrained_cfg():
    assert {"videomae_small_patch16_224", "videomae_base_patch16_224", "test_videomae"} <= set(
        list_models("*videomae*")
    )
    for name in ("videomae_small_patch16_224", "videomae_base_patch16_224"):
        cfg = get_model_entry(name).cfg
        assert (cfg.num_frames, cfg.frame_stride, cfg.input_size) == (16, 4, (224, 224))
        assert (cfg.mean, cfg.std) == (IMAGENET_MEAN, IMAGENET_STD)
        assert cfg.license == "CC-BY-NC-4.0" and "MCG-NJU/VideoMAE" in cfg.source
        assert {"k400_ft", "k400_pretrain_official", "k400_ft_official"} <= set(cfg.weights)
    base = get_model_entry("videomae_base_patch16_224").cfg
    assert base.weights["k400_pretrain"].hf_hub_id == "MCG-NJU/videomae-base"
    assert base.weights["k400_ft"].hf_hub_id == "MCG-NJU/videomae-base-finetuned-kinetics"
    assert base.weights["k400_pretrain_official"].filename == "kinetics400-ViTB-1600-16x5x3-pretrain.pth"
    info = model_info("test_videomae")
    assert info["num_features"] == 32 and info["family"] == "videomae" and info["num_frames"] == 4


def test_tiny_forward_backward_and_embedding_definition():
    model = create_model("test_videomae", num_classes=3)
    x = _clip()
    tokens = model.forward_tokens(x)
    assert tokens.shape == (2, (4 // 2) * 2 * 2, 32)  # T/tubelet * (H/16) * (W/16) tokens
    feats = pooled(model, x)
    assert torch.allclose(feats, model.fc_norm(tokens.mean(1)))
    logits = model(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert create_model("test_videomae")(x).shape == (2, 32)  # num_classes=0: forward returns the embedding


def test_wrong_clip_length_is_explained():
    model = create_model("test_videomae")
    with pytest.raises(ValueError, match="built for 4 frames got 6"):
        model(_clip(t=6))
    assert create_model("test_videomae", num_frames=6)(_clip(t=6)).shape == (2, 32)


# ---- official .pth checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_official_vit_small_checkpoint_loads_strictly(tmp_path, kind):
    layout = _layout(f"{kind}_vit_small")
    sd = _random_sd(layout["keys"])
    wrapped = {layout["wrapper"]: sd, "epoch": 1599}
    if kind == "pretrain":
        wrapped["args"] = argparse.Namespace(model="pretrain_videomae_small_patch16_224")  # as the release pickles
    path = tmp_path / f"{kind}.pth"
    torch.save(wrapped, path)
    model = create_model("videomae_small_patch16_224", pretrained=str(path), num_classes=400)
    assert model.load_report.ok
    own = model.state_dict()
    src = "encoder." if kind == "pretrain" else ""
    d = 384
    qkv = sd[f"{src}blocks.3.attn.qkv.weight"]
    layer = "videomae.encoder.layer.3.attention.attention."
    assert torch.equal(own[layer + "query.weight"], qkv[:d])
    assert torch.equal(own[layer + "key.weight"], qkv[d : 2 * d])
    assert torch.equal(own[layer + "value.weight"], qkv[2 * d :])
    assert torch.equal(own[layer + "query.bias"], sd[f"{src}blocks.3.attn.q_bias"])
    assert torch.equal(own[layer + "value.bias"], sd[f"{src}blocks.3.attn.v_bias"])
    assert torch.equal(own["videomae.encoder.layer.11.output.dense.weight"], sd[f"{src}blocks.11.mlp.fc2.weight"])
    assert torch.equal(
        own["videomae.embeddings.patch_embeddings.projection.weight"], sd[f"{src}patch_embed.proj.weight"]
    )
    if kind == "finetune":
        assert torch.equal(own["fc_norm.weight"], sd["fc_norm.weight"])
        assert torch.equal(own["head.weight"], sd["head.weight"])
    else:  # the fine-tuning recipe: encoder.norm dropped, fc_norm fresh, new head
        assert torch.equal(own["fc_norm.weight"], torch.ones(d)) and torch.equal(own["fc_norm.bias"], torch.zeros(d))


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_official_vit_base_layout_converts_to_the_exact_key_set(kind):
    layout = _layout(f"{kind}_vit_base")
    with torch.device("meta"):
        model = create_model("videomae_base_patch16_224", num_classes=400)
        sd = {k: torch.empty(shape) for k, shape in layout["keys"]}
    converted = _filter_videomae({layout["wrapper"]: sd}, model)
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert load_state_dict(model, converted, strict=True).ok


def test_official_conversion_matches_reference_outputs(tmp_path):
    """Outputs of the converted model equal those of MCG-NJU/VideoMAE's own modules (fixture run)."""
    ref = torch.load(FIX / "videomae_tiny_reference.pt", weights_only=False)
    tiny = ref["tiny"]
    geometry = dict(patch_size=tiny["patch_size"], image_size=tiny["img_size"], tubelet_size=tiny["tubelet_size"])
    ft_file = tmp_path / "ft.pth"
    torch.save({"module": ref["finetune_state_dict"]}, ft_file)
    model = VideoMAE(16, 2, 2, num_frames=4, num_classes=5, **geometry).eval()
    load_pretrained(model, str(ft_file), filter_fn=_filter_videomae)
    with torch.no_grad():
        assert (pooled(model, ref["input"]) - ref["finetune_features"]).abs().max() < 1e-5
        assert (model(ref["input"]) - ref["finetune_logits"]).abs().max() < 1e-5

    pre_file = tmp_path / "pre.pth"
    torch.save({"model": ref["pretrain_state_dict"], "args": argparse.Namespace()}, pre_file)
    model = VideoMAE(16, 2, 2, num_frames=16, **geometry).eval()
    load_pretrained(model, str(pre_file), filter_fn=_filter_videomae)
    psd = ref["pretrain_state_dict"]
    with torch.no_grad():
        tokens = model.forward_tokens(ref["pretrain_input"])
        normed = F.layer_norm(tokens, (16,), psd["encoder.norm.weight"], psd["encoder.norm.bias"], 1e-6)
        assert (normed - ref["pretrain_encoder_tokens"]).abs().max() < 1e-5
        assert torch.allclose(pooled(model, ref["pretrain_input"]), F.layer_norm(tokens.mean(1), (16,), eps=1e-6))


def test_unsupported_official_variants_are_refused():
    sd = _random_sd(_layout("finetune_vit_small")["keys"][:20])
    with pytest.raises(ModelError, match="layer-scale"):
        convert_videomae_state_dict({**sd, "blocks.0.gamma_1": torch.ones(384)})
    with pytest.raises(ModelError, match="learnable position"):
        convert_videomae_state_dict({**sd, "pos_embed": torch.zeros(1, 1568, 384)})
    with pytest.raises(ModelError, match="first-token pooling"):
        convert_videomae_state_dict({**sd, "norm.weight": torch.ones(384), "norm.bias": torch.zeros(384)})


# ---- Hugging Face folders ----------------------------------------------------------------------------------------


def _save_hf(cls_name: str, tmp_path: Path, **cfg) -> tuple[torch.nn.Module, str]:
    import transformers

    model = getattr(transformers, cls_name)(transformers.VideoMAEConfig(**{**TINY_HF, **cfg})).eval()
    _randomise(model)
    folder = tmp_path / cls_name
    model.save_pretrained(folder)
    return model, str(folder)


def test_hf_classification_folder_matches_transformers(tmp_path):
    hf, folder = _save_hf("VideoMAEForVideoClassification", tmp_path, num_labels=3)
    model = create_model("test_videomae", pretrained=f"local-dir:{folder}", num_classes=3).eval()
    assert model.load_report.ok
    x = _clip()
    with torch.no_grad():
        pv = x.transpose(1, 2)
        ref_feats = hf.fc_norm(hf.videomae(pv).last_hidden_state.mean(1))
        assert (pooled(model, x) - ref_feats).abs().max() <= 1e-5
        assert (model(x) - hf(pixel_values=pv).logits).abs().max() <= 1e-5
    # as a feature extractor the Kinetics head is simply left out; another class count keeps a new head
    assert create_model("test_videomae", pretrained=f"local-dir:{folder}").load_report.ok
    other = create_model("test_videomae", pretrained=f"local-dir:{folder}", num_classes=7)
    assert other.head.weight.shape == (7, 32) and other.load_report.ok


def test_hf_pretraining_folder_drops_decoder_and_matches_encoder(tmp_path):
    # like MCG-NJU/videomae-base: VideoMAEForPreTraining with a final per-token layernorm (use_mean_pooling=False)
    hf, folder = _save_hf("VideoMAEForPreTraining", tmp_path, use_mean_pooling=False)
    model = create_model("test_videomae", pretrained=f"local-dir:{folder}").eval()
    assert model.load_report.ok
    x = _clip()
    with torch.no_grad():
        ref = hf.videomae(x.transpose(1, 2)).last_hidden_state  # includes the pre-train layernorm
        tokens = model.forward_tokens(x)
        normed = hf.videomae.layernorm(tokens)
        assert (normed - ref).abs().max() <= 1e-5
        assert torch.equal(model.fc_norm.weight, torch.ones(32))


def test_hf_bare_model_folder_gives_identical_tokens(tmp_path):
    hf, folder = _save_hf("VideoMAEModel", tmp_path)
    model = create_model("test_videomae", pretrained=f"local-dir:{folder}").eval()
    x = _clip()
    with torch.no_grad():
        assert (model.forward_tokens(x) - hf(x.transpose(1, 2)).last_hidden_state).abs().max() <= 1e-5


def test_hf_folder_of_another_size_is_refused(tmp_path):
    _, folder = _save_hf("VideoMAEModel", tmp_path, hidden_size=48, num_attention_heads=4)
    with pytest.raises(ModelError, match=r"hidden_size=48 \(model has 32\)"):
        create_model("test_videomae", pretrained=f"local-dir:{folder}")


# ---- weight tags -------------------------------------------------------------------------------------------------


def test_official_tag_offline_names_the_file_and_uses_a_placed_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path))
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    cfg = get_model_entry("videomae_base_patch16_224").cfg
    with pytest.raises(WeightsUnavailableError, match="kinetics400-ViTB-1600-16x5x3-pretrain.pth"):
        resolve("k400_pretrain_official", cfg, "videomae_base_patch16_224")
    placed = tmp_path / "weights" / "kinetics400-ViTB-1600-16x5x3-pretrain.pth"
    placed.parent.mkdir()
    placed.write_bytes(b"x")
    assert resolve("k400_pretrain_official", cfg).path == placed


def test_download_that_returns_a_web_page_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMOVID_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    page = tmp_path / "quota.html"
    page.write_text("<!DOCTYPE html><html><body>Google Drive - quota exceeded</body></html>")
    with pytest.raises(WeightsUnavailableError, match="returned a web page"):
        download_url(page.as_uri(), filename="w.pth")
    assert not (tmp_path / "cache" / "weights" / "w.pth").exists()
