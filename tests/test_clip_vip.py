"""CLIP-ViP video encoder: proxy tokens, in-frame attention, CLIP-ViP and Hugging Face CLIP weights.

Released-checkpoint layouts and reference outputs come from ``tests/fixtures/clip_vip_keys/`` (written by
``tools/gen_clip_vip_fixtures.py`` from microsoft/XPretrain's own ``VidCLIP``); CLIP folders from ``transformers``'
``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emovid.errors import ModelError
from emovid.models import create_model, get_model_entry, list_models, model_info
from emovid.models.base import pooled
from emovid.models.clip_vip import CLIPViP, _filter_clip_vip, frame_attention_mask, load_clip_text_model
from emovid.models.hub import load_pretrained, load_state_dict
from emovid.video.transforms import CLIP_MEAN, CLIP_STD

FIX = Path(__file__).parent / "fixtures" / "clip_vip_keys"
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                   patch_size=16)  # fmt: skip  # = test_clip_vip
TINY_TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=40,
                 max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip


def _video(b: int = 2, t: int = 3, s: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, t, s, s, generator=torch.Generator().manual_seed(seed))


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0)
            )


# ---- registry and forward ----------------------------------------------------------------------------------------


def test_registered_names_and_pretrained_cfg():
    assert {"clip_vip_base_patch32", "clip_vip_base_patch16", "test_clip_vip"} <= set(list_models("*clip_vip*"))
    for patch in (32, 16):
        cfg = get_model_entry(f"clip_vip_base_patch{patch}").cfg
        assert (cfg.num_frames, cfg.input_size, cfg.mean, cfg.std) == (12, (224, 224), CLIP_MEAN, CLIP_STD)
        assert cfg.default_tag == "hdvila_pretrain"
        assert cfg.weights["hdvila_pretrain"].filename == f"pretrain_clipvip_base_{patch}.pt"
        assert cfg.weights["openai_clip"].hf_hub_id == f"openai/clip-vit-base-patch{patch}"
    info = model_info("test_clip_vip")
    assert (info["num_features"], info["family"], info["num_frames"]) == (24, "clip_vip", 3)


def test_tiny_forward_backward():
    model = create_model("test_clip_vip", num_classes=5)
    x = _video()
    assert pooled(model, x).shape == (2, 24)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    emb = model.vision_model.embeddings
    assert emb.added_cls.grad is not None and emb.temporal_embedding.grad is not None
    assert all(p.grad is not None for p in model.parameters())
    # any clip length works: the 3 temporal rows are interpolated
    assert pooled(model, _video(t=5)).shape == (2, 24)


def test_frame_attention_mask_matrix():
    allowed = frame_attention_mask(num_proxies=2, num_frames=3, tokens_per_frame=2)
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1, 1, 1],  # proxies see everything
            [1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 0, 0, 0, 0],  # frame 0 patches: proxies + frame 0
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 1, 1, 0, 0],  # frame 1
            [1, 1, 0, 0, 1, 1, 0, 0],
            [1, 1, 0, 0, 0, 0, 1, 1],  # frame 2
            [1, 1, 0, 0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def test_frames_only_meet_through_the_proxies():
    """After one layer a frame's patch tokens ignore other frames (proxies still carry no pixel content)."""
    x = _video(b=1, t=3)
    y = x.clone()
    y[:, :, 2] += 1.0  # change frame 2 only
    m, n = 3, 4  # class + 2 proxies; 2x2 patches per frame
    one = create_model("test_clip_vip", depth=1).eval()
    with torch.no_grad():
        hx, _ = one.forward_tokens(x)
        hy, _ = one.forward_tokens(y)
    frames01 = slice(m, m + 2 * n)
    assert torch.allclose(hx[:, frames01], hy[:, frames01], atol=1e-6)
    assert not torch.allclose(hx[:, m + 2 * n :], hy[:, m + 2 * n :])
    assert not torch.allclose(hx[:, :m], hy[:, :m])  # the proxies saw frame 2
    two = create_model("test_clip_vip", depth=2).eval()
    with torch.no_grad():
        hx, _ = two.forward_tokens(x)
        hy, _ = two.forward_tokens(y)
    assert not torch.allclose(hx[:, frames01], hy[:, frames01])  # second layer: via the proxies


# ---- CLIP-ViP's released checkpoints -----------------------------------------------------------------------------


def test_clip_vip_matches_reference_outputs(tmp_path):
    """Outputs equal those of XPretrain's own CLIP-ViP modules (fixture run), with and without interpolation."""
    ref = torch.load(FIX / "clip_vip_tiny_reference.pt", weights_only=False)
    v, vip = ref["tiny"]["vision_config"], ref["tiny"]["vip"]
    path = tmp_path / "model_best.pt"
    torch.save(ref["state_dict"], path)
    model = CLIPViP(
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        depth=v["num_hidden_layers"],
        num_heads=v["num_attention_heads"],
        patch_size=v["patch_size"],
        image_size=v["image_size"],
        projection_dim=ref["tiny"]["projection_dim"],
        num_proxies=vip["add_cls_num"],
        temporal_size=vip["temporal_size"],
    ).eval()
    assert load_pretrained(model, str(path), filter_fn=_filter_clip_vip).ok
    for t, video in ref["videos"].items():
        with torch.no_grad():
            x = video.transpose(1, 2)  # reference takes [B, T, C, H, W]
            hidden, _ = model.forward_tokens(x)
            assert (hidden - ref["outputs"][t]["last_hidden_state"]).abs().max() < 1e-5
            assert (pooled(model, x) - ref["outputs"][t]["image_embeds"]).abs().max() < 1e-5


@pytest.mark.parametrize("patch", [32, 16])
def test_released_checkpoint_layout_converts_strictly(patch):
    layout = json.loads((FIX / f"vidclip_base_{patch}.json").read_text())
    with torch.device("meta"):
        model = create_model(f"clip_vip_base_patch{patch}")
        sd = {k: torch.empty(shape) for k, shape in layout["keys"]}
    converted = _filter_clip_vip(sd, model)
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert load_state_dict(model, converted, strict=True).ok
    assert own["vision_model.embeddings.added_cls"].shape == (3, 768)
    assert model.num_features == 512


# ---- Hugging Face CLIP folders -----------------------------------------------------------------------------------


def _save_clip(tmp_path: Path, kind: str = "CLIPModel", **vision) -> tuple[torch.nn.Module, str]:
    import transformers

    vcfg = {**TINY_VISION, **vision}
    if kind == "CLIPModel":
        cfg = transformers.CLIPConfig(vision_config=vcfg, text_config=TINY_TEXT, projection_dim=24)
    else:
        cfg = transformers.CLIPVisionConfig(**vcfg, projection_dim=24)
    model = getattr(transformers, kind)(cfg).eval()
    _randomise(model)
    folder = tmp_path / kind
    model.save_pretrained(folder)
    return model, str(folder)


def _clip_image_embeds(hf, frame: torch.Tensor) -> torch.Tensor:
    return hf.visual_projection(hf.vision_model(pixel_values=frame).pooler_output)


def test_hf_clip_folder_loads_vision_weights_and_reduces_to_clip(tmp_path):
    hf, folder = _save_clip(tmp_path)
    model = create_model("test_clip_vip", pretrained=f"local-dir:{folder}").eval()
    assert model.load_report.ok
    ours, theirs = model.state_dict(), hf.state_dict()
    vision_keys = [
        k for k in theirs if k.startswith(("vision_model.", "visual_projection.")) and "position_ids" not in k
    ]
    assert len(vision_keys) == len(ours) - 2  # all but added_cls and temporal_embedding
    assert all(torch.equal(ours[k], theirs[k]) for k in vision_keys)
    emb = model.vision_model.embeddings
    assert torch.equal(emb.temporal_embedding, torch.zeros(1, 3, 32))
    assert (emb.added_cls - emb.class_embedding).abs().max() < 0.2  # proxies start next to the class token

    # no proxies + one frame: exactly CLIP's image embedding
    plain = create_model("test_clip_vip", pretrained=f"local-dir:{folder}", num_proxies=0).eval()
    x = _video(t=1)
    with torch.no_grad():
        assert (pooled(plain, x) - _clip_image_embeds(hf, x[:, :, 0])).abs().max() <= 1e-5
        # with proxies the embedding differs from CLIP's, but not by much at initialisation
        cos = torch.cosine_similarity(pooled(model, x), _clip_image_embeds(hf, x[:, :, 0]))
        assert cos.min() > 0.9


def test_hf_vision_with_projection_folder_reduces_to_image_embeds(tmp_path):
    hf, folder = _save_clip(tmp_path, "CLIPVisionModelWithProjection")
    model = create_model("test_clip_vip", pretrained=f"local-dir:{folder}", num_proxies=0).eval()
    x = _video(t=1, seed=3)
    with torch.no_grad():
        assert (pooled(model, x) - hf(pixel_values=x[:, :, 0]).image_embeds).abs().max() <= 1e-5


def test_hf_vision_model_folder_keeps_its_own_projection(tmp_path, caplog):
    hf, folder = _save_clip(tmp_path, "CLIPVisionModel")
    model = create_model("test_clip_vip", pretrained=f"local-dir:{folder}", num_proxies=0).eval()
    assert "no visual_projection" in caplog.text
    x = _video(t=1)
    with torch.no_grad():
        cls_out = hf(pixel_values=x[:, :, 0]).pooler_output
        assert (pooled(model, x) - model.visual_projection(cls_out)).abs().max() <= 1e-5


def test_hf_clip_folder_of_another_architecture_is_refused(tmp_path):
    _, folder = _save_clip(tmp_path, patch_size=8)
    with pytest.raises(ModelError, match=r"patch_size=8 \(model has 16\)"):
        create_model("test_clip_vip", pretrained=f"local-dir:{folder}")


def test_text_tower_from_clip_folder_and_clip_vip_checkpoint(tmp_path):
    hf, folder = _save_clip(tmp_path)
    text = load_clip_text_model(folder)
    ids = torch.tensor([[0, 5, 9, 1], [0, 7, 1, 1]])
    with torch.no_grad():
        expected = hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
        assert (text(input_ids=ids).text_embeds - expected).abs().max() <= 1e-5
    ref = torch.load(FIX / "clip_vip_tiny_reference.pt", weights_only=False)
    path = tmp_path / "vidclip.pt"
    torch.save(ref["state_dict"], path)
    tiny_text = {**ref["tiny"]["text_config"], "projection_dim": ref["tiny"]["projection_dim"]}
    text = load_clip_text_model(path, text_config=tiny_text)
    assert torch.equal(text.text_projection.weight, ref["state_dict"]["clipmodel.text_projection.weight"])
