"""Write the X3D checkpoint-layout fixtures in ``tests/fixtures/x3d_keys/`` from pytorchvideo's own ``create_x3d``.

The fixtures let the offline tests check that emovid's X3D has exactly the state-dict layout of the released
``X3D_XS/S/M/L.pyth`` checkpoints, without pytorchvideo installed:

* ``x3d_{xs,s,m,l}.json.gz``: every state-dict key with its shape and dtype, in pytorchvideo's order, plus the
  ``create_x3d`` arguments of the variant (those of ``pytorchvideo.models.hub.x3d``).
* ``x3d_xs_reference.pt``: X3D-XS outputs on a seeded 1x3x4x160x160 clip, with weights made from a seed by
  :func:`seeded_state_dict` (the test rebuilds the same weights from the key fixture): the head's pooled features
  (the embedding), the logits (proj without softmax) and pytorchvideo's default output (softmax probabilities).

It runs in a scratch virtual environment, never in the project's (pytorchvideo needs torchvision, which breaks
CPU torch there); torchvision is only imported for heads X3D does not use, so it is stubbed::

    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install torch==2.13.0 numpy portalocker tabulate termcolor yacs pyyaml tqdm
    /tmp/ref/bin/pip install --no-deps pytorchvideo==0.1.5 fvcore iopath
    /tmp/ref/bin/python tools/gen_x3d_key_fixture.py [--out tests/fixtures/x3d_keys]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import types
from pathlib import Path

import torch

# The create_x3d arguments of pytorchvideo.models.hub.x3d.{x3d_xs, x3d_s, x3d_m, x3d_l}.
VARIANTS = {
    "x3d_xs": {"input_clip_length": 4, "input_crop_size": 160},
    "x3d_s": {"input_clip_length": 13, "input_crop_size": 160},
    "x3d_m": {"input_clip_length": 16, "input_crop_size": 224},
    "x3d_l": {"input_clip_length": 16, "input_crop_size": 312, "depth_factor": 5.0},
}
WEIGHT_SEED = 0
INPUT_SEED = 1
REFERENCE_SHAPE = (1, 3, 4, 160, 160)


def stub_torchvision() -> None:
    """Make ``import torchvision`` succeed without it: pytorchvideo imports ``RoIAlign`` and transforms at import."""
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    tr = types.ModuleType("torchvision.transforms")
    trf = types.ModuleType("torchvision.transforms.functional")

    class _Unavailable:  # only detection heads use these
        def __init__(self, *a, **k):
            raise RuntimeError("torchvision is stubbed in this reference environment")

    ops.RoIAlign = _Unavailable
    tv.ops, tv.transforms, tr.functional = ops, tr, trf
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.transforms": tr})
    sys.modules["torchvision.transforms.functional"] = trf


def seeded_state_dict(keys_shapes: list[tuple[str, tuple[int, ...], str]], seed: int = WEIGHT_SEED) -> dict:
    """Well-conditioned random weights, reproducible from key names and shapes alone.

    One generator seeded with ``seed`` visits the keys in sorted order: ``num_batches_tracked`` is 0,
    ``running_var`` is ``0.5 + U[0,1)``, ``running_mean`` is ``0.1 N(0,1)``, other 1-D ``weight`` ``1 + 0.1 N``,
    1-D ``bias`` ``0.1 N``, and tensors of 2 or more dims ``N(0,1) / sqrt(fan_in)``.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, dtype in sorted(keys_shapes):
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
            fan_in = math.prod(shape[1:])
            out[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return out


def _dumps(doc: dict) -> str:
    """JSON with one state-dict key per line (readable with ``zcat``)."""
    head = json.dumps({k: v for k, v in doc.items() if k != "keys"}, indent=1)[:-2]
    rows = ",\n".join(json.dumps(row) for row in doc["keys"])
    return f'{head},\n "keys": [\n{rows}\n ]\n}}\n'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/x3d_keys"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    stub_torchvision()
    import pytorchvideo
    from pytorchvideo.models.x3d import create_x3d

    version = getattr(pytorchvideo, "__version__", "unknown")
    models = {}
    for name, kwargs in VARIANTS.items():
        model = create_x3d(**kwargs)
        models[name] = model
        sd = model.state_dict()
        doc = {
            "model": name,
            "reference": f"pytorchvideo {version} pytorchvideo.models.x3d.create_x3d",
            "create_x3d_kwargs": kwargs,
            "num_params": sum(p.numel() for p in model.parameters()),
            "generated_by": "tools/gen_x3d_key_fixture.py (see its docstring for the environment)",
            "keys": [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()],
        }
        # mtime=0 keeps the file byte-identical across reruns
        with open(out / f"{name}.json.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(_dumps(doc).encode())
        print(f"{name}: {len(sd)} keys, {doc['num_params']:,} params")

    # Reference outputs of X3D-XS at its native geometry.
    model = models["x3d_xs"].eval()
    keys = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    model.load_state_dict(seeded_state_dict(keys), strict=True)
    x = torch.randn(REFERENCE_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))
    feats = {}
    hook = model.blocks[5].pool.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o.flatten(1)))
    with torch.no_grad():
        probs = model(x)
        head = model.blocks[5]
        act, head.activation = head.activation, None
        logits = model(x)
        head.activation = act
    hook.remove()
    torch.save(
        {
            "reference": f"pytorchvideo {version} create_x3d(**{VARIANTS['x3d_xs']}) in eval mode",
            "weight_seed": WEIGHT_SEED,
            "input_seed": INPUT_SEED,
            "input_shape": list(REFERENCE_SHAPE),
            "input_sum": float(x.double().sum()),
            "weight_sum": float(sum(v.double().sum() for v in model.state_dict().values())),
            "features": feats["f"].clone(),
            "logits": logits.clone(),
            "probs": probs.clone(),
        },
        out / "x3d_xs_reference.pt",
    )
    print(f"reference: features {tuple(feats['f'].shape)}, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
