"""Write the VideoMAE checkpoint-layout fixtures in ``tests/fixtures/videomae_keys/`` from the official model code.

The official VideoMAE checkpoints are ``state_dict()`` dumps of the model classes in MCG-NJU/VideoMAE's
``modeling_pretrain.py`` (``PretrainVisionTransformer``; released pre-train files wrap it as ``{"model": ...}``,
``utils.save_model``) and ``modeling_finetune.py`` (``VisionTransformer``; released fine-tuned files come from
DeepSpeed, ``{"module": ...}``). This script builds those classes — the repository's own files, unmodified — and
writes:

* ``{pretrain,finetune}_vit_{small,base}.json``: every state-dict key with its shape, in the reference order, and
  the builder call that produced it (``pretrain_videomae_*_patch16_224`` with ``decoder_depth=4`` as in the
  released pre-train scripts; ``vit_*_patch16_224`` with ``num_classes=400, all_frames=16``).
* ``videomae_tiny_reference.pt``: a tiny fine-tune model and a tiny pre-train model (``TINY``) with seeded random
  weights (every tensor, including LayerNorms and q/v biases, drawn at random so a mis-mapped tensor shows), a
  seeded input clip, and the reference outputs: the fine-tune model's ``forward_features`` (mean pool + fc_norm)
  and logits, and the pre-train encoder's tokens (``encoder.forward_features`` with nothing masked, i.e. after
  its final ``norm``) on a 16-frame clip (the reference pre-train encoder is always built for 16 frames).

It runs in a scratch virtual environment, never the project's: the reference code needs timm 0.4.x, and timm needs
torchvision (a CUDA build on PyPI that breaks CPU torch), which is stubbed because VideoMAE's model files use
only timm's layers::

    python3 -m venv /tmp/ref_vm
    /tmp/ref_vm/bin/pip install torch==2.13.0 numpy pillow
    /tmp/ref_vm/bin/pip install --no-deps timm==0.4.12
    mkdir -p /tmp/vmae_src && for f in modeling_finetune.py modeling_pretrain.py; do
        git -C <MCG-NJU/VideoMAE clone> show 14ef8d856287c94ef1f985fe30f958eb4ec2c55d:$f > /tmp/vmae_src/$f; done
    /tmp/ref_vm/bin/python tools/gen_videomae_fixtures.py --ref-src /tmp/vmae_src [--out tests/fixtures/videomae_keys]
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import torch

REF_COMMIT = "14ef8d856287c94ef1f985fe30f958eb4ec2c55d"
# tiny geometry (kept small so the fixture file stays ~200 kB)
TINY = {"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "tubelet_size": 2}
TINY_FRAMES = 4
TINY_CLASSES = 5
WEIGHT_SEED = 0
INPUT_SEED = 1


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve empty ``torchvision.*`` modules whose attributes are inert classes (timm imports them eagerly)."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []

        def __getattr__(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {"__init__": lambda self, *a, **k: None})

        mod.__getattr__ = __getattr__
        return mod

    def exec_module(self, module):
        pass


def _layout(sd: dict) -> list[list]:
    return [[k, list(v.shape)] for k, v in sd.items()]


def _write_json(path: Path, obj: dict) -> None:
    """JSON with one state-dict key per line, so a diff of two fixtures reads well."""
    head = {k: v for k, v in obj.items() if k != "keys"}
    lines = [json.dumps(e) for e in obj["keys"]]
    body = json.dumps(head, indent=1)[:-2] + ',\n "keys": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    json.loads(body)  # guard the hand-made layout
    path.write_text(body)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.state_dict(keep_vars=True).items()):
            is_norm_scale = name.endswith(".weight") and "norm" in name.rsplit(".", 2)[-2]
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if is_norm_scale else 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref-src", required=True, help="folder with VideoMAE's modeling_finetune.py/modeling_pretrain.py")
    ap.add_argument("--out", default="tests/fixtures/videomae_keys")
    args = ap.parse_args()
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, args.ref_src)
    import modeling_finetune as mf
    import modeling_pretrain as mp
    import timm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {
        "reference": f"https://github.com/MCG-NJU/VideoMAE @ {REF_COMMIT}",
        "timm": timm.__version__,
        "torch": torch.__version__,
        "generator": "tools/gen_videomae_fixtures.py",
    }
    for size in ("small", "base"):
        pre = getattr(mp, f"pretrain_videomae_{size}_patch16_224")(decoder_depth=4)
        _write_json(
            out / f"pretrain_vit_{size}.json",
            {
                **provenance,
                "builder": f"modeling_pretrain.pretrain_videomae_{size}_patch16_224(decoder_depth=4)",
                "wrapper": "model",
                "keys": _layout(pre.state_dict()),
            },
        )
        ft = getattr(mf, f"vit_{size}_patch16_224")(num_classes=400, all_frames=16)
        _write_json(
            out / f"finetune_vit_{size}.json",
            {
                **provenance,
                "builder": f"modeling_finetune.vit_{size}_patch16_224(num_classes=400, all_frames=16)",
                "wrapper": "module",
                "keys": _layout(ft.state_dict()),
            },
        )

    from functools import partial

    norm = partial(torch.nn.LayerNorm, eps=1e-6)
    ft = mf.VisionTransformer(
        **TINY, qkv_bias=True, norm_layer=norm, all_frames=TINY_FRAMES, num_classes=TINY_CLASSES, init_scale=1.0
    ).eval()
    _randomise(ft, WEIGHT_SEED)
    pre = mp.PretrainVisionTransformer(
        img_size=TINY["img_size"],
        patch_size=TINY["patch_size"],
        encoder_embed_dim=TINY["embed_dim"],
        encoder_depth=TINY["depth"],
        encoder_num_heads=TINY["num_heads"],
        decoder_num_classes=3 * TINY["tubelet_size"] * TINY["patch_size"] ** 2,
        decoder_embed_dim=8,
        decoder_depth=1,
        decoder_num_heads=2,
        qkv_bias=True,
        norm_layer=norm,
        tubelet_size=TINY["tubelet_size"],
    ).eval()
    _randomise(pre, WEIGHT_SEED + 1)
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(2, 3, TINY_FRAMES, TINY["img_size"], TINY["img_size"], generator=g)
    # the pre-train encoder's PatchEmbed is always built for 16 frames (num_frames is not passed through)
    x16 = torch.randn(1, 3, 16, TINY["img_size"], TINY["img_size"], generator=g)
    with torch.no_grad():
        feats = ft.forward_features(x)
        logits = ft(x)
        n_tok = pre.encoder.patch_embed.num_patches
        tokens = pre.encoder.forward_features(x16, torch.zeros(1, n_tok, dtype=torch.bool))
    torch.save(
        {
            **provenance,
            "tiny": {**TINY, "all_frames": TINY_FRAMES, "num_classes": TINY_CLASSES},
            "input": x,
            "finetune_state_dict": ft.state_dict(),
            "finetune_features": feats,
            "finetune_logits": logits,
            "pretrain_input": x16,
            "pretrain_state_dict": pre.state_dict(),
            "pretrain_encoder_tokens": tokens,
        },
        out / "videomae_tiny_reference.pt",
    )
    print(f"wrote {sorted(p.name for p in out.iterdir())}")


if __name__ == "__main__":
    main()
