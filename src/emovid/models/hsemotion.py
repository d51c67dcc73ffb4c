"""EmotiEffLib / HSEmotion face-expression models (Savchenko et al.) in plain PyTorch, read from their ONNX files.

EmotiEffLib (formerly HSEmotion, github.com/sb-ai-lab/EmotiEffLib, code under Apache-2.0) publishes EfficientNets
fine-tuned on AffectNet after face-identification pre-training on VGGFace2. Three of them are registered here:

============================  ============  =====  ==========================================================
name                          trunk         input  outputs
============================  ============  =====  ==========================================================
``enet_b0_8_best_vgaf``       EfficientNet-B0  224  8 emotion logits
``enet_b0_8_va_mtl``          EfficientNet-B0  224  8 emotion logits, then valence and arousal (10 outputs)
``enet_b2_8``                 EfficientNet-B2  260  8 emotion logits
============================  ============  =====  ==========================================================

Facts read from EmotiEffLib's repository (commit ``f1df0e8``, April 2025):

* the trunks are timm's ``tf_efficientnet_b0_ns`` / ``tf_efficientnet_b2_ns`` (training notebooks
  ``training_and_examples/affectnet/train_emotions-pytorch.ipynb``): TensorFlow "same" padding (the odd pixel
  of a stride-2 convolution's padding goes bottom/right, computed from the input size), BatchNorm with
  ``eps=1e-3``, SiLU, squeeze-excite on every block; the head is ``Linear(1280 or 1408, 8)`` inside an
  ``nn.Sequential`` (``classifier.0``), or ``Linear(1280, 10)`` for ``va_mtl`` (``classifier``);
* the ONNX files (``models/affectnet_emotions/onnx/*.onnx``, last changed in Nov 2022) were written by
  ``training_and_examples/convert_pt_to_onnx.py``: ``torch.onnx.export`` of the eval-mode model, opset 11,
  ``do_constant_folding=True``, input ``input`` ``[B, 3, S, S]``, output ``output``; EmotiEffLib reads the last
  node of the graph as a ``Gemm`` whose weight is ``[classes, features]``. The TorchScript exporter folds every
  BatchNorm into the preceding convolution in eval mode (so those weights get generated names such as
  ``onnx::Conv_1234``), keeps the SE convolutions and the classifier under their torch names;
* preprocessing (``emotiefflib/facial_analysis.py``): RGB face crop resized to 224 (b0) or 260 (b2) pixels,
  ``x / 255``, ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
* classes of the 8-class models: Anger, Contempt, Disgust, Fear, Happiness, Neutral, Sadness, Surprise (named
  here ``angry contempt disgust fear happy neutral sad surprise`` like emovid's other models, in that order);
* ``va_mtl``: outputs 8 and 9 are valence and arousal, raw linear outputs trained with a CCC loss against
  AffectNet's annotations (which lie in [-1, 1]); no activation is applied to them.

:func:`onnx_state_dict` reads an ONNX file's initializers with the ``onnx`` package (protobuf only: no pickle,
no onnxruntime, nothing in the file is executed) and maps them onto :class:`HSEmotionEfficientNet`: by torch names
when the file keeps them, else by walking the graph's ``Conv`` / ``BatchNormalization`` / ``Gemm`` nodes in order,
checking every shape, stride, group count and the padding style. Folded BatchNorms are loaded as BatchNorms with
unit scale, zero mean and ``var = 1 - eps`` (so the model stays trainable and its state dict keeps timm's layout);
:meth:`HSEmotionEfficientNet.fuse_for_inference` folds them back.

No weights ship with emovid: they are trained on AffectNet, whose terms allow research use only.
``create_model("enet_b0_8_va_mtl", pretrained=True)`` downloads the ONNX file from EmotiEffLib's GitHub repository
(pinned to a commit) on first use; the file's git blob id from that commit is checked (the repository publishes no
sha256). ``emovid weights fetch enet_b0_8_va_mtl`` fetches ahead of time; ``tools/convert_hsemotion.py`` writes a
safetensors copy.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.errors import ModelError
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model

__all__ = [
    "B0_ARCH",
    "HSEMOTION_LABELS",
    "PUBLISHED_FILES",
    "VA_NAMES",
    "HSEmotionEfficientNet",
    "git_blob_sha1",
    "onnx_state_dict",
    "scaled_arch",
    "timm_filter",
]

HSEMOTION_LABELS = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
VA_NAMES = ("valence", "arousal")
BN_EPS = 1e-3  # timm's tf_ EfficientNets (BN_EPS_TF_DEFAULT)

#: (block type, repeats, kernel, stride, expansion, out channels) per stage of EfficientNet-B0
#: (timm's arch_def ``ds_r1_k3_s1_e1_c16_se0.25`` ... ``ir_r1_k3_s1_e6_c320_se0.25``).
B0_ARCH = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)

# EmotiEffLib's repository at the commit the URLs are pinned to, and the git blob ids of the files there
# (`git ls-tree f1df0e8 models/affectnet_emotions/onnx/`; unchanged since the files were added in Nov 2022).
_COMMIT = "f1df0e8548c666d268826e50b7de107fd5553e9d"
_URL = f"https://raw.githubusercontent.com/sb-ai-lab/EmotiEffLib/{_COMMIT}/models/affectnet_emotions/onnx/"
PUBLISHED_FILES = {  # file name -> git blob sha1
    "enet_b0_8_best_vgaf.onnx": "49772db4e87ee6df57087fba131832a959e5c64d",
    "enet_b0_8_va_mtl.onnx": "7ce9d6dd5b82b260bc19bfe7822a6ffa1abb6011",
    "enet_b2_8.onnx": "a7cb612cbab1ce3d50dd52e57285fb2c7ea6d0d9",
}


def _make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def scaled_arch(width: float, depth: float, arch: Sequence[tuple] = B0_ARCH) -> tuple[tuple, ...]:
    """EfficientNet compound scaling as timm does it: channels ``make_divisible(c * width, 8)``, repeats
    ``ceil(r * depth)`` (B2: ``width=1.1, depth=1.2``)."""
    out = []
    for kind, r, k, s, e, c in arch:
        out.append((kind, int(math.ceil(r * depth)), k, s, e, _make_divisible(c * width) if width != 1 else c))
    return tuple(out)


def tf_same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow ``padding="SAME"`` for one axis: ``(before, after)``, the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding computed from the input size (timm's ``Conv2dSame``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = tf_same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        pw = tf_same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if any(ph) or any(pw):
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return super().forward(x)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    # As timm's create_conv2d with padding="same": static symmetric padding where TF's "same" is symmetric
    # (stride 1, odd kernel), padding computed per input otherwise.
    if stride == 1 and kernel % 2 == 1:
        return nn.Conv2d(cin, cout, kernel, 1, padding=kernel // 2, groups=groups, bias=bias)
    return Conv2dSame(cin, cout, kernel, stride, groups=groups, bias=bias)


class SqueezeExcite(nn.Module):
    """``x * sigmoid(conv_expand(silu(conv_reduce(mean(x)))))`` (timm's ``SqueezeExcite`` names)."""

    def __init__(self, chs: int, rd_chs: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class DepthwiseSeparable(nn.Module):
    """``ds`` block: depthwise conv - BN - SiLU - SE - pointwise conv - BN (+ skip when shapes allow)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, se_ratio: float, bn_eps: float):
        super().__init__()
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = nn.BatchNorm2d(cin, eps=bn_eps)
        self.se = SqueezeExcite(cin, max(1, round(cin * se_ratio)))
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout, eps=bn_eps)
        self.has_skip = stride == 1 and cin == cout

    def layout(self) -> list[tuple[str, str | None]]:
        return [("conv_dw", "bn1"), ("se.conv_reduce", None), ("se.conv_expand", None), ("conv_pw", "bn2")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(F.silu(self.bn1(self.conv_dw(x))))))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    """``ir`` block: 1x1 expand - BN - SiLU - depthwise - BN - SiLU - SE - 1x1 project - BN (+ skip)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int, se_ratio: float, bn_eps: float):
        super().__init__()
        mid = _make_divisible(cin * expansion)
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.se = SqueezeExcite(mid, max(1, round(cin * se_ratio)))  # SE width from the block input, as timm
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout, eps=bn_eps)
        self.has_skip = stride == 1 and cin == cout

    def layout(self) -> list[tuple[str, str | None]]:
        return [
            ("conv_pw", "bn1"),
            ("conv_dw", "bn2"),
            ("se.conv_reduce", None),
            ("se.conv_expand", None),
            ("conv_pwl", "bn3"),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.bn1(self.conv_pw(x)))
        y = self.se(F.silu(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


class HSEmotionEfficientNet(Backbone):
    """timm-layout TF EfficientNet (``tf_efficientnet_b0``/``b2``) as EmotiEffLib fine-tuned it.

    Module and parameter names are timm's (``conv_stem``, ``bn1``, ``blocks.S.I.*``, ``conv_head``, ``bn2``,
    ``classifier``), so a timm state dict loads after ``classifier.0.`` becomes ``classifier.``.

    Args:
        arch: ``(type, repeats, kernel, stride, expansion, channels)`` per stage (:data:`B0_ARCH`,
            :func:`scaled_arch`).
        stem_chans: channels of the stride-2 stem convolution.
        num_features: channels of the 1x1 head convolution (the embedding size).
        num_classes: outputs of the linear classifier (0: ``forward`` returns the embedding).
        extra_outputs: names of the last ``len(extra_outputs)`` classifier outputs that are not class logits
            (``("valence", "arousal")`` for ``enet_b0_8_va_mtl``).
        drop_rate: dropout before the classifier.
        se_ratio: squeeze-excite width relative to each block's input channels.
        bn_eps: BatchNorm epsilon (1e-3, TensorFlow's).
        in_chans: input channels (grey input is repeated to 3 channels).
    """

    classifier_name = "classifier"  # timm's EfficientNet name, which its checkpoints use

    def __init__(
        self,
        arch: Sequence[tuple] = B0_ARCH,
        stem_chans: int = 32,
        num_features: int = 1280,
        num_classes: int = 8,
        extra_outputs: Sequence[str] = (),
        drop_rate: float = 0.0,
        se_ratio: float = 0.25,
        bn_eps: float = BN_EPS,
        in_chans: int = 3,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.conv_stem = _conv(in_chans, stem_chans, 3, 2)
        self.bn1 = nn.BatchNorm2d(stem_chans, eps=bn_eps)
        stages, cin = [], stem_chans
        for kind, repeats, k, s, e, c in arch:
            blocks: list[nn.Module] = []
            for i in range(repeats):
                stride = s if i == 0 else 1
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(cin, c, k, stride, se_ratio, bn_eps))
                elif kind == "ir":
                    blocks.append(InvertedResidual(cin, c, k, stride, e, se_ratio, bn_eps))
                else:
                    raise ValueError(f"unknown EfficientNet block type {kind!r} (ds or ir)")
                cin = c
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, num_features, 1)
        self.bn2 = nn.BatchNorm2d(num_features, eps=bn_eps)
        self.num_features = num_features
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.reset_classifier(num_classes, extra_outputs)

    def reset_classifier(self, num_classes: int, extra_outputs: Sequence[str] = ()) -> None:
        """A new linear classifier with ``num_classes`` outputs, the last ``len(extra_outputs)`` of them named."""
        extra = tuple(extra_outputs)
        if extra and num_classes <= len(extra):
            raise ValueError(f"num_classes={num_classes} leaves no class logits next to {extra}")
        self.extra_outputs = extra
        super().reset_classifier(num_classes)

    @property
    def head(self) -> nn.Module:  # the common name of the classifier
        return self.classifier

    def layout(self) -> list[tuple[str, str | None]]:
        """``(conv, batchnorm or None)`` module names in the order the forward pass (and an ONNX export) runs them."""
        out: list[tuple[str, str | None]] = [("conv_stem", "bn1")]
        for si, stage in enumerate(self.blocks):
            for bi, block in enumerate(stage):
                out += [(f"blocks.{si}.{bi}.{c}", f"blocks.{si}.{bi}.{b}" if b else None) for c, b in block.layout()]
        out.append(("conv_head", "bn2"))
        return out

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:  # [B, C, 1, H, W] single-frame clips from the video transforms
            if x.shape[2] != 1:
                raise ValueError(f"{type(self).__name__} takes images; got a clip of {x.shape[2]} frames")
            x = x[:, :, 0]
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        return x

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[B, num_features, H/32, W/32]`` map after the head convolution (7 x 7 for 224-pixel input)."""
        x = F.silu(self.bn1(self.conv_stem(self._to_input(x))))
        return F.silu(self.bn2(self.conv_head(self.blocks(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled map after the head convolution (:meth:`forward_map`)."""
        return self.forward_map(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Globally averaged map: the ``[B, num_features]`` embedding (EmotiEffLib's "features")."""
        return feats.mean((-2, -1))

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's EfficientNet groups: stem ``conv_stem``/``bn1``; blocks: each block of each stage in order
        (``coarse``: each stage); head: ``conv_head``, ``bn2`` and the classifier."""
        if coarse:
            blocks = [(r"^blocks\.(\d+)\.", None)]
        else:
            blocks = [(rf"^blocks\.{s}\.(\d+)\.", None) for s in range(len(self.blocks))]
        return {"stem": r"^(conv_stem|bn1)\.", "blocks": blocks, "head": r"^(conv_head|bn2|classifier)\."}

    @torch.no_grad()
    def fuse_for_inference(self) -> HSEmotionEfficientNet:
        """Fold every BatchNorm into the convolution before it (in place, eval mode only); returns ``self``."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if self.training:
            raise ModelError("fuse_for_inference() needs eval mode; call model.eval() first")
        for conv_name, bn_name in self.layout():
            if bn_name is None:
                continue
            bn = self.get_submodule(bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            conv = self.get_submodule(conv_name)
            fused = fuse_conv_bn_eval(conv, bn)  # keeps the class, so Conv2dSame keeps its padding
            _set_submodule(self, conv_name, fused)
            _set_submodule(self, bn_name, nn.Identity())
        return self

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, K]`` (softmax over the class logits only; extra outputs left out)."""
        out = self.forward(x)
        k = out.shape[1] - len(self.extra_outputs)
        return out[:, :k].softmax(-1)

    def load_pretrained_file(self, path: str | os.PathLike) -> dict:
        """Read weights for this model: an EmotiEffLib ``.onnx`` (converted here), else a safetensors/torch file.

        Called by :func:`emovid.models.hub.load_pretrained`. A published file downloaded into emovid's weights
        folder is first checked against its git blob id.
        """
        p = Path(path)
        if p.suffix.lower() == ".onnx" or _looks_like_onnx(p):
            _verify_published(p)
            return onnx_state_dict(p, self)[0]
        from emovid.models.checkpoint import load_state_dict_file

        return load_state_dict_file(p)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _looks_like_onnx(path: Path) -> bool:
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


def _verify_published(path: Path) -> None:
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


# ---- registry ------------------------------------------------------------------------------------------------

_LICENSE = (
    "Apache-2.0 (EmotiEffLib code); weights trained on AffectNet, whose terms allow research (non-commercial) use only"
)
_SOURCE = (
    "Savchenko et al., EmotiEffLib / HSEmotion (github.com/sb-ai-lab/EmotiEffLib, Apache-2.0): timm "
    "tf_efficientnet_{arch}_ns pre-trained on VGGFace2, fine-tuned on AffectNet; weights read from "
    "models/affectnet_emotions/onnx/{file} (not bundled; fetched on first use)"
)


def _weights(file: str, what: str) -> dict[str, WeightSource]:
    return {
        "affectnet": WeightSource(
            url=_URL + file,
            filename=file,
            sha256=None,  # not published; the loader checks the git blob id of the pinned commit instead
            license=_LICENSE,
            description=f"{what}; EmotiEffLib's ONNX file at commit {_COMMIT[:7]} (git blob "
            f"{PUBLISHED_FILES[file][:12]}, checked on load), converted from its initializers on load",
        )
    }


def _cfg(size: int, file: str | None, arch: str, what: str, label_names=HSEMOTION_LABELS) -> PretrainedCfg:
    return PretrainedCfg(
        num_frames=1,
        input_size=(size, size),
        short_side=size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        in_chans=3,
        face_crop=True,
        num_classes=len(label_names),
        label_names=label_names,
        weights=_weights(file, what) if file else {},
        default_tag="affectnet" if file else None,
        license=_LICENSE,
        source=_SOURCE.format(arch=arch, file=file or "enet_*.onnx"),
        task="expression",
        training_data="AffectNet (Mollahosseini et al. 2017; ~287 k web faces, 8 expressions + valence/arousal); "
        "AffectNet's terms allow research use only, so these weights are for research",
        model_card="docs/models/hsemotion.md",
    )


def timm_filter(state_dict: dict, model: nn.Module) -> dict:
    """A timm ``EfficientNet`` state dict (EmotiEffLib's ``nn.Sequential`` head: ``classifier.0.*``) for this port."""
    from emovid.models.checkpoint import unwrap_state_dict

    sd = unwrap_state_dict(state_dict)
    head = "classifier.0."
    return {("classifier." + k[len(head) :] if k.startswith(head) else k): v for k, v in sd.items()}


def _b0(num_classes: int, extra: Sequence[str], kwargs: dict) -> HSEmotionEfficientNet:
    kwargs.setdefault("num_classes", num_classes)
    if "extra_outputs" not in kwargs:
        kwargs["extra_outputs"] = extra if kwargs["num_classes"] == num_classes else ()
    return HSEmotionEfficientNet(**kwargs)


@register_model(
    filter_fn=timm_filter,
    pretrained_cfg=_cfg(224, "enet_b0_8_best_vgaf.onnx", "b0", "EfficientNet-B0, 8 AffectNet emotions (best on VGAF)"),
)
def enet_b0_8_best_vgaf(**kwargs) -> HSEmotionEfficientNet:
    """EmotiEffLib EfficientNet-B0, 8 emotions (4.0 M parameters); 61.3 % on AffectNet-8 val per EmotiEffLib."""
    return _b0(8, (), kwargs)


@register_model(
    filter_fn=timm_filter,
    pretrained_cfg=_cfg(
        224, "enet_b0_8_va_mtl.onnx", "b0", "EfficientNet-B0, 8 AffectNet emotions + valence + arousal (multi-task)"
    ),
)
def enet_b0_8_va_mtl(**kwargs) -> HSEmotionEfficientNet:
    """EmotiEffLib EfficientNet-B0, 8 emotion logits then valence and arousal (10 outputs)."""
    return _b0(10, VA_NAMES, kwargs)


@register_model(
    filter_fn=timm_filter, pretrained_cfg=_cfg(260, "enet_b2_8.onnx", "b2", "EfficientNet-B2, 8 AffectNet emotions")
)
def enet_b2_8(**kwargs) -> HSEmotionEfficientNet:
    """EmotiEffLib EfficientNet-B2 (260 pixels, 7.7 M parameters), 8 emotions; 63.0 % on AffectNet-8 val per
    EmotiEffLib."""
    kwargs.setdefault("arch", scaled_arch(1.1, 1.2))
    kwargs.setdefault("num_features", 1408)
    return _b0(8, (), kwargs)


#: the tiny test model's stages: asymmetric TF padding at 52 pixels (52 -> 26 -> 13 -> 7), both block types, skips
TEST_ARCH = (("ds", 2, 3, 1, 1, 8), ("ir", 2, 3, 2, 2, 8), ("ir", 1, 5, 2, 3, 16))


@register_model(filter_fn=timm_filter, pretrained_cfg=_cfg(52, None, "b0", "tiny test model"))
def test_hsemotion_enet(**kwargs) -> HSEmotionEfficientNet:
    """Tiny EmotiEffLib-layout EfficientNet (52 x 52, 8 emotions + valence + arousal) for tests; random init only."""
    kwargs.setdefault("arch", TEST_ARCH)
    kwargs.setdefault("stem_chans", 8)
    kwargs.setdefault("num_features", 24)
    return _b0(10, VA_NAMES, kwargs)
