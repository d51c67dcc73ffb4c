"""Convert an EmotiEffLib / HSEmotion EfficientNet ONNX file into an emovid ``.safetensors`` weights file.

emovid never ships these weights (they are trained on AffectNet, whose terms allow research use only). Models load
the ONNX file directly (``create_model("enet_b0_8_va_mtl", pretrained=True)`` downloads it on first use, or
``pretrained="enet_b0_8_va_mtl.onnx"``); this script writes a plain safetensors copy, e.g. for machines without
the ``onnx`` package::

    # on a connected machine (or fetch it by hand from github.com/sb-ai-lab/EmotiEffLib,
    # models/affectnet_emotions/onnx/enet_b0_8_va_mtl.onnx)
    emovid weights fetch enet_b0_8_va_mtl
    python tools/convert_hsemotion.py ~/.cache/emovid/weights/enet_b0_8_va_mtl.onnx --out enet_b0_8_va_mtl.safetensors
    # then: create_model("enet_b0_8_va_mtl", pretrained="enet_b0_8_va_mtl.safetensors")

Only the ONNX file's initializers are read (``onnx`` + ``onnx.numpy_helper``: protobuf, no pickle, no onnxruntime,
nothing in the file runs). The model is chosen from the file name (``--model`` overrides it); shapes, strides,
groups and padding are checked against it, and the converted model is run once on a fixed input to print its
outputs (``--check-onnx`` also runs the ONNX graph with ``onnx.reference`` and prints the largest difference: slow
for the full-size models, minutes on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("enet_b0_8_best_vgaf", "enet_b0_8_va_mtl", "enet_b2_8")


def guess_model(path: Path) -> str:
    stem = path.stem.lower()
    for name in sorted(MODELS, key=len, reverse=True):
        if name in stem:
            return name
    raise SystemExit(f"{path}: cannot tell the model from the file name; pass --model ({', '.join(MODELS)})")


def convert(path: str | Path, model_name: str | None = None, out: str | Path | None = None) -> dict:
    """Convert ``path``; write ``out`` (safetensors) when given; return a summary dict."""
    from emovid.models import create_model
    from emovid.models.hsemotion_onnx import git_blob_sha1, onnx_state_dict

    path = Path(path)
    name = model_name or guess_model(path)
    model = create_model(name).eval()
    sd, info = onnx_state_dict(path, model)
    model.load_state_dict(sd)
    h, w = model.pretrained_cfg.input_size
    x = torch.linspace(-2, 2, 3 * h * w).reshape(1, 3, h, w)
    with torch.no_grad():
        y = model(x)[0]
    k = y.shape[0] - len(model.extra_outputs)
    summary = {
        "file": str(path),
        "git_blob_sha1": git_blob_sha1(path),
        "model": name,
        **info,
        "labels": list(model.pretrained_cfg.label_names or ()),
        "extra_outputs": list(model.extra_outputs),
        "probe_probs": [round(float(v), 5) for v in y[:k].softmax(-1)],
        "probe_extra": [round(float(v), 5) for v in y[k:]],
    }
    if out is not None:
        from safetensors.torch import save_file

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(out),
            metadata={"model": name, "source": path.name, "git_blob_sha1": summary["git_blob_sha1"]},
        )
        summary["out"] = str(out)
    return summary


def check_with_onnx_reference(path: Path, model_name: str | None = None) -> float:
    """Largest absolute difference between the ONNX graph (``onnx.reference``, NumPy) and the converted model."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    from emovid.models import create_model

    name = model_name or guess_model(path)
    model = create_model(name, pretrained=str(path)).eval()
    h, w = model.pretrained_cfg.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    sess = ReferenceEvaluator(str(path))
    ref = sess.run(None, {sess.input_names[0]: x})[0]
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    return float(np.abs(ours - ref).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", type=Path, help="EmotiEffLib ONNX file (e.g. enet_b0_8_va_mtl.onnx)")
    ap.add_argument("--model", help=f"registered model ({', '.join(MODELS)}; default: from the file name)")
    ap.add_argument("--out", type=Path, help="write the state dict here (.safetensors)")
    ap.add_argument("--check-onnx", action="store_true", help="also run the ONNX graph with onnx.reference")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from emovid.errors import EmovidError

    try:
        summary = convert(args.onnx, args.model, args.out)
        if args.check_onnx:
            summary["max_abs_diff_vs_onnx_reference"] = check_with_onnx_reference(args.onnx, args.model)
    except EmovidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
