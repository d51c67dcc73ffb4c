"""EmotiEffLib's published ONNX files -> :class:`emovid.models.hsemotion.HSEmotionEfficientNet` weights.

:func:`onnx_state_dict` reads an ONNX file's initializers with the ``onnx`` package (protobuf only: no pickle, no
onnxruntime, no code from the file) and maps them onto the port, by torch name when the export kept them, else by
walking the graph's Conv/Gemm nodes in order; every shape, stride, group count and padding is checked, and a file
that is not such a network fails with one line naming it. :func:`verify_published` checks a file fetched into
emovid's weights folder against its git blob id at EmotiEffLib's pinned commit.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn

from emovid.errors import ModelError
from emovid.models.hsemotion import _COMMIT, PUBLISHED_FILES, Conv2dSame, HSEmotionEfficientNet

__all__ = ["git_blob_sha1", "looks_like_onnx", "onnx_state_dict", "verify_published"]


def looks_like_onnx(path: Path) -> bool:
    if path.suffix.lower() in (".safetensors", ".pth", ".pt", ".pyth", ".bin", ".ckpt"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:1] == b"\x08"  # protobuf field 1 (ir_version, varint) opens every ONNX ModelProto


# ---- published files: integrity -------------------------------------------------------------------------------


def git_blob_sha1(path: str | os.PathLike) -> str:
    """Git's blob id of a file: ``sha1(b"blob <size>\\0" + content)`` (what ``git ls-tree`` lists)."""
    p = Path(path)
    h = hashlib.sha1(f"blob {p.stat().st_size}\0".encode())
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_published(path: Path) -> None:
    """A published file fetched into emovid's weights folder must be the one in EmotiEffLib's pinned commit."""
    from emovid.models.hub_env import cache_dir

    want = PUBLISHED_FILES.get(path.name)
    if want is None:
        return
    try:
        in_cache = path.resolve().parent == cache_dir().resolve()
    except OSError:
        in_cache = False
    if not in_cache:  # a file the user passed (--pretrained FILE) may be their own export: no fixed checksum
        return
    got = git_blob_sha1(path)
    if got != want:
        raise ModelError(
            f"not the published {path.name} (git blob {got[:12]}..., EmotiEffLib commit {_COMMIT[:7]} has "
            f"{want[:12]}...); delete it and fetch it again with `emovid weights fetch`",
            path,
        )


# ---- ONNX initializers -> state dict ---------------------------------------------------------------------------


def _onnx_fail(path: Path, why: str) -> ModelError:
    return ModelError(f"{why}; expected an EmotiEffLib EfficientNet ONNX file (e.g. enet_b0_8_va_mtl.onnx)", path)


def _read_onnx(path: Path):
    """``(graph, {name: TensorProto})`` of an ONNX file; weights held in other files are refused."""
    try:
        import onnx
    except ImportError as e:
        raise ModelError("reading ONNX weights needs the onnx package: pip install onnx", path) from e
    from emovid.utils.paths import check_regular_file

    check_regular_file(path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        msg = (str(e).strip().splitlines() or [""])[0][:160]
        raise _onnx_fail(path, f"not a readable ONNX file ({type(e).__name__}: {msg})") from None
    graph = model.graph
    tensors = {}
    for t in graph.initializer:
        tensors[t.name] = t
    for node in graph.node:  # some exporters keep weights in Constant nodes
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    tensors[node.output[0]] = a.t
    for name, t in tensors.items():
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise _onnx_fail(path, f"tensor {name!r} is stored in an external data file, which emovid does not read")
    return graph, tensors


def _array(path: Path, tensors: dict, name: str, node: str) -> torch.Tensor:
    from onnx import numpy_helper

    if name not in tensors:
        raise _onnx_fail(path, f"node {node!r} takes {name!r}, which is not a weight stored in the file")
    try:
        arr = numpy_helper.to_array(tensors[name])
    except Exception as e:
        raise _onnx_fail(path, f"tensor {name!r} is damaged ({type(e).__name__}: {str(e)[:120]})") from None
    if arr.dtype.kind != "f":
        raise _onnx_fail(path, f"tensor {name!r} holds {arr.dtype}, not floats")
    t = torch.from_numpy(arr.astype("float32", copy=True))
    if not torch.isfinite(t).all():
        raise _onnx_fail(path, f"tensor {name!r} holds NaN or infinite values")
    return t


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _by_name(tensors: dict, own: dict[str, torch.Tensor]) -> dict[str, str] | None:
    """``{model key: initializer name}`` when the file keeps torch names for every tensor (else ``None``)."""
    names = {}
    for key, ref in own.items():
        if key.endswith("num_batches_tracked"):
            continue
        cands = [key]
        if key.startswith("classifier."):
            cands.append("classifier.0." + key[len("classifier.") :])  # nn.Sequential(nn.Linear) head
        hit = next((c for c in cands if c in tensors and tuple(tensors[c].dims) == tuple(ref.shape)), None)
        if hit is None:
            return None
        names[key] = hit
    return names


def _check_conv(path: Path, node, attrs: dict, conv: nn.Conv2d, producer: dict, name: str) -> None:
    k = tuple(conv.kernel_size)
    s = tuple(conv.stride)
    got_k = tuple(attrs.get("kernel_shape", k))
    got_s = tuple(attrs.get("strides", (1, 1)))
    got_g = int(attrs.get("group", 1))
    if got_k != k or got_s != s or got_g != conv.groups:
        raise _onnx_fail(
            path,
            f"Conv {node.name or node.output[0]!r} (for {name}) has kernel {got_k}, stride {got_s}, {got_g} groups; "
            f"the model needs kernel {k}, stride {s}, {conv.groups} groups",
        )
    pads = tuple(int(v) for v in attrs.get("pads", (0, 0, 0, 0)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if isinstance(conv, Conv2dSame):
        symmetric = pads == (k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2) and any(pads)
        padded_before = producer.get(node.input[0]) == "Pad"
        if symmetric and not padded_before and auto in ("NOTSET", ""):
            raise _onnx_fail(
                path,
                f"Conv for {name} pads symmetrically: the file is a PyTorch-padded EfficientNet (timm "
                "efficientnet_b*), not the TensorFlow-padded tf_efficientnet_b* that EmotiEffLib published",
            )
    elif auto in ("NOTSET", "") and pads != (conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]):
        raise _onnx_fail(path, f"Conv for {name} pads {pads}; the model pads {tuple(conv.padding)} on each side")


def onnx_state_dict(path: str | os.PathLike, model: HSEmotionEfficientNet) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert an EmotiEffLib EfficientNet ONNX file's initializers into ``model``'s state dict.

    Torch-named initializers (an export that kept the module names) are taken by name; otherwise the ``Conv``,
    ``BatchNormalization`` and final ``Gemm`` (or ``MatMul`` + ``Add``) nodes are matched in graph order to
    :meth:`HSEmotionEfficientNet.layout`. Shapes, strides, groups and padding are checked; a convolution with a
    bias and no BatchNorm after it (BatchNorm folded by the exporter) fills the BatchNorm with unit scale, zero
    mean and ``var = 1 - eps`` so that ``BN(conv(x)) == conv(x) + bias``.

    Returns:
        ``(state_dict, info)``: ``model.load_state_dict(state_dict)`` loads strictly; ``info`` says how it was
        mapped (``{"mapping": "names" | "graph", "bn_folded": bool, "num_classes", "num_features", "tensors"}``).

    Raises:
        ModelError: not a readable ONNX file, or not one of this architecture (the message names the file and
            the first node that does not fit).
    """
    p = Path(path)
    graph, tensors = _read_onnx(p)
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    info = {"num_features": model.num_features}

    names = _by_name(tensors, own)
    if names is not None:
        for key, src in names.items():
            out[key] = _array(p, tensors, src, src)
        info.update(mapping="names", bn_folded=False)
    else:
        out, folded = _by_graph(p, graph, tensors, model, own)
        info.update(mapping="graph", bn_folded=folded)
    for key, ref in own.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(ref)
    info["num_classes"] = int(out["classifier.weight"].shape[0]) if "classifier.weight" in out else 0
    info["tensors"] = len(out)
    return out, info


def _by_graph(p: Path, graph, tensors: dict, model: HSEmotionEfficientNet, own: dict) -> tuple[dict, bool]:
    producer = {o: n.op_type for n in graph.node for o in n.output}
    ops = []
    for node in graph.node:  # the weighted nodes; an Add only as the bias of a MatMul classifier
        weighted = node.op_type in ("Conv", "BatchNormalization", "Gemm", "MatMul")
        if weighted or (node.op_type == "Add" and ops and ops[-1].op_type == "MatMul"):
            ops.append(node)
    convs = [n for n in ops if n.op_type == "Conv"]
    layout = model.layout()
    if len(convs) != len(layout):
        feats = _conv_out(tensors, convs[-1]) if convs else None
        raise _onnx_fail(
            p,
            f"{len(convs)} convolutions (head width {feats}); {type(model).__name__} with {model.num_features} "
            f"features has {len(layout)} (enet_b0_* have 81, enet_b2_* 115)",
        )
    out: dict[str, torch.Tensor] = {}
    folded = False
    i = 0
    for conv_name, bn_name in layout:
        node = ops[i]
        if node.op_type != "Conv":
            raise _onnx_fail(p, f"expected the convolution for {conv_name}, found {node.op_type} {node.name!r}")
        i += 1
        conv = model.get_submodule(conv_name)
        _check_conv(p, node, _attrs(node), conv, producer, conv_name)
        w = _array(p, tensors, node.input[1], node.name)
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise _onnx_fail(
                p, f"{conv_name} weight is {tuple(w.shape)} in the file, {tuple(conv.weight.shape)} in the model"
            )
        b = _array(p, tensors, node.input[2], node.name) if len(node.input) > 2 and node.input[2] else None
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise _onnx_fail(p, f"{conv_name} bias is {tuple(b.shape)}, expected ({w.shape[0]},)")
        out[f"{conv_name}.weight"] = w
        if bn_name is None:
            if b is None:
                raise _onnx_fail(p, f"{conv_name} has no bias in the file (the squeeze-excite convolutions have one)")
            out[f"{conv_name}.bias"] = b
            continue
        bn = model.get_submodule(bn_name)
        if i < len(ops) and ops[i].op_type == "BatchNormalization":
            bnode = ops[i]
            i += 1
            eps = float(_attrs(bnode).get("epsilon", 1e-5))
            if abs(eps - bn.eps) > 1e-7:
                raise _onnx_fail(p, f"BatchNormalization for {bn_name} has epsilon {eps:g}, the model {bn.eps:g}")
            scale, beta, mean, var = (_array(p, tensors, n, bnode.name) for n in bnode.input[1:5])
            if b is not None:  # conv bias before an unfolded BN: BN(x + b) = BN with mean - b
                mean = mean - b
        else:
            folded = True
            c = w.shape[0]
            scale, mean = torch.ones(c), torch.zeros(c)
            beta = b if b is not None else torch.zeros(c)
            var = torch.full((c,), 1.0 - bn.eps)
        for key, v in zip(("weight", "bias", "running_mean", "running_var"), (scale, beta, mean, var), strict=True):
            if tuple(v.shape) != tuple(own[f"{bn_name}.{key}"].shape):
                raise _onnx_fail(p, f"{bn_name}.{key} is {tuple(v.shape)} in the file")
            out[f"{bn_name}.{key}"] = v
    rest = ops[i:]
    if isinstance(model.classifier, nn.Linear):
        if not rest or rest[0].op_type not in ("Gemm", "MatMul"):
            raise _onnx_fail(p, "no Gemm (linear classifier) after the last convolution")
        node = rest[0]
        if node.op_type == "Gemm":
            a = _attrs(node)
            w = _array(p, tensors, node.input[1], node.name)
            if int(a.get("transA", 0)):
                raise _onnx_fail(p, f"Gemm {node.name!r} transposes its input (transA=1)")
            if not int(a.get("transB", 0)):
                w = w.t().contiguous()
            if float(a.get("alpha", 1.0)) != 1.0:
                w = w * float(a["alpha"])
            bias = _array(p, tensors, node.input[2], node.name) if len(node.input) > 2 and node.input[2] else None
            if bias is not None:
                bias = bias * float(a.get("beta", 1.0))
        else:  # MatMul(x, W[in, out]) + Add(bias)
            w = _array(p, tensors, node.input[1], node.name).t().contiguous()
            add = rest[1] if len(rest) > 1 and rest[1].op_type == "Add" else None
            bias = None
            if add is not None:
                bname = next((n for n in add.input if n in tensors), None)
                bias = _array(p, tensors, bname, add.name) if bname else None
        want = tuple(model.classifier.weight.shape)
        if tuple(w.shape) != want:
            raise _onnx_fail(
                p,
                f"the file's classifier is {tuple(w.shape)} ([outputs, features]), the model's {want}: "
                f"{'another number of outputs (enet_*_8: 8, enet_b0_8_va_mtl: 10)' if w.shape[1] == want[1] else ''}"
                f"{'another EfficientNet size' if w.shape[1] != want[1] else ''}",
            )
        out["classifier.weight"] = w
        out["classifier.bias"] = bias.reshape(-1) if bias is not None else torch.zeros(w.shape[0])
    return out, folded


def _conv_out(tensors: dict, node) -> int | None:
    t = tensors.get(node.input[1]) if len(node.input) > 1 else None
    return int(t.dims[0]) if t is not None and len(t.dims) else None
