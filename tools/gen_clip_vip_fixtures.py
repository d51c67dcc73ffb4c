"""Write the CLIP-ViP checkpoint-layout fixtures in ``tests/fixtures/clip_vip_keys/`` from microsoft/XPretrain's code.

The released CLIP-ViP checkpoints (``pretrain_clipvip_base_32.pt``, ``pretrain_clipvip_base_16.pt``) are plain
``state_dict()`` dumps of ``src.modeling.VidCLIP.VidCLIP`` (``src/utils/load_save.py``: ``ModelSaver.save``), whose
``clipmodel`` is the ``CLIPModel`` of ``src/modeling/CLIP_ViP.py``. This script builds ``VidCLIP`` from the
repository's own files, unmodified, with the configurations of the released models (the CLIP ViT-B/32 and ViT-B/16
configs, ``clip_vision_additional_config`` of ``src/configs/pretrain/pretrain_vip_base_{32,16}.json``:
``type=ViP, temporal_size=12, if_use_temporal_embed=1, add_cls_num=3``) and writes:

* ``vidclip_base_{32,16}.json``: every state-dict key with its shape, in the reference order.
* ``clip_vip_tiny_reference.pt``: a tiny ``VidCLIP`` (``TINY_*``) with seeded random weights (every tensor drawn at
  random, LayerNorms around 1), seeded input videos with 3 frames (= ``temporal_size``) and 4 frames (the
  temporal embedding is then interpolated), and the reference outputs: ``clipmodel.get_image_features`` (the
  first token after ``post_layernorm`` and ``visual_projection``) and the vision tower's ``last_hidden_state``.

It runs in a scratch virtual environment with the transformers release CLIP-ViP was written against (the model code
uses 4.x-only helpers); torch is the CPU build::

    python3 -m venv /tmp/ref_vm
    /tmp/ref_vm/bin/pip install torch==2.13.0 numpy easydict
    /tmp/ref_vm/bin/pip install --no-deps transformers==4.30.2
    /tmp/ref_vm/bin/pip install "huggingface_hub<0.20" safetensors regex packaging filelock pyyaml tqdm requests \
        "tokenizers<0.14"
    mkdir -p /tmp/clipvip_src/src/modeling && for f in __init__.py modeling/__init__.py modeling/CLIP_ViP.py \
        modeling/CLIP.py modeling/VidCLIP.py; do git -C <microsoft/XPretrain clone> \
        show c37c904a008bcdec36ebf0f7ee7babc652d0f733:CLIP-ViP/src/$f > /tmp/clipvip_src/src/$f; done
    /tmp/ref_vm/bin/python tools/gen_clip_vip_fixtures.py --ref-src /tmp/clipvip_src \
        [--out tests/fixtures/clip_vip_keys]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

REF_COMMIT = "c37c904a008bcdec36ebf0f7ee7babc652d0f733"
RELEASED_VIP = {"type": "ViP", "temporal_size": 12, "if_use_temporal_embed": 1, "logit_scale_init_value": 4.60,
                "add_cls_num": 3}  # fmt: skip
TINY_VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 16, "patch_size": 8}  # fmt: skip
TINY_TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "vocab_size": 50, "max_position_embeddings": 8}  # fmt: skip
TINY_VIP = {"type": "ViP", "temporal_size": 3, "if_use_temporal_embed": 1, "logit_scale_init_value": 4.60,
            "add_cls_num": 2}  # fmt: skip
TINY_PROJ = 12
WEIGHT_SEED = 0
INPUT_SEED = 1


def _write_json(path: Path, obj: dict) -> None:
    """JSON with one state-dict key per line."""
    head = {k: v for k, v in obj.items() if k != "keys"}
    lines = [json.dumps(e) for e in obj["keys"]]
    body = json.dumps(head, indent=1)[:-2] + ',\n "keys": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    json.loads(body)
    path.write_text(body)


def _build(vidclip_cls, clip_config: dict, vip: dict):
    from easydict import EasyDict
    from transformers import CLIPConfig

    with tempfile.TemporaryDirectory() as d:
        CLIPConfig(**clip_config).save_pretrained(d)
        args = EasyDict(clip_config=d, clip_weights=None, clip_vision_additional_config=EasyDict(vip))
        return vidclip_cls(args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref-src", required=True, help="folder holding XPretrain's CLIP-ViP/src as src/")
    ap.add_argument("--out", default="tests/fixtures/clip_vip_keys")
    args = ap.parse_args()
    sys.path.insert(0, args.ref_src)
    import transformers
    from src.modeling.VidCLIP import VidCLIP

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {
        "reference": f"https://github.com/microsoft/XPretrain (CLIP-ViP/src/modeling) @ {REF_COMMIT}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "generator": "tools/gen_clip_vip_fixtures.py",
    }
    for patch in (32, 16):
        # transformers' CLIPConfig defaults are openai/clip-vit-base-patch32's; B/16 differs only in patch size
        cfg = {"vision_config": {"patch_size": patch}, "projection_dim": 512}
        model = _build(VidCLIP, cfg, RELEASED_VIP)
        _write_json(
            out / f"vidclip_base_{patch}.json",
            {
                **provenance,
                "builder": f"VidCLIP(CLIPConfig(vision_config=dict(patch_size={patch})), {RELEASED_VIP})",
                "keys": [[k, list(v.shape)] for k, v in model.state_dict().items()],
            },
        )
        del model

    tiny_cfg = {"vision_config": TINY_VISION, "text_config": TINY_TEXT, "projection_dim": TINY_PROJ}
    model = _build(VidCLIP, tiny_cfg, TINY_VIP).eval()
    g = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():
            if not p.is_floating_point():
                continue  # position_ids
            is_norm_scale = name.endswith(".weight") and "norm" in name.rsplit(".", 2)[-2]
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if is_norm_scale else 0.0))
    gi = torch.Generator().manual_seed(INPUT_SEED)
    size = TINY_VISION["image_size"]
    videos = {t: torch.randn(2, t, 3, size, size, generator=gi) for t in (3, 4)}
    outputs = {}
    with torch.no_grad():
        for t, v in videos.items():
            outputs[t] = {
                "image_embeds": model.clipmodel.get_image_features(pixel_values=v),
                "last_hidden_state": model.clipmodel.vision_model(pixel_values=v).last_hidden_state,
            }
    torch.save(
        {
            **provenance,
            "tiny": {**tiny_cfg, "vip": TINY_VIP},
            "state_dict": model.state_dict(),
            "videos": videos,
            "outputs": outputs,
        },
        out / "clip_vip_tiny_reference.pt",
    )
    print(f"wrote {sorted(p.name for p in out.iterdir())}")


if __name__ == "__main__":
    main()
