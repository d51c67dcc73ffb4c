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

:func:`emovid.models.hsemotion_onnx.onnx_state_dict` reads an ONNX file's initializers with the ``onnx`` package
(protobuf only: no pickle, no onnxruntime, nothing in the file is executed) and maps them onto
:class:`HSEmotionEfficientNet`: by torch names when the file keeps them, else by walking the graph's ``Conv`` /
``BatchNormalization`` / ``Gemm`` nodes in order, checking every shape, stride, group count and the padding style.
Folded BatchNorms are loaded as BatchNorms with unit scale, zero mean and ``var = 1 - eps`` (so the model stays
trainable and its state dict keeps timm's layout); :meth:`HSEmotionEfficientNet.fuse_for_inference` folds them back.

No weights ship with emovid: they are trained on AffectNet, whose terms allow research use only.
``create_model("enet_b0_8_va_mtl", pretrained=True)`` downloads the ONNX file from EmotiEffLib's GitHub repository
(pinned to a commit) on first use; the file's git blob id from that commit is checked (the repository publishes no
sha256). ``emovid weights fetch enet_b0_8_va_mtl`` fetches ahead of time; ``tools/convert_hsemotion.py`` writes a
safetensors copy.
"""

from __future__ import annotations

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
        from emovid.models.hsemotion_onnx import looks_like_onnx, onnx_state_dict, verify_published

        p = Path(path)
        if p.suffix.lower() == ".onnx" or looks_like_onnx(p):
            verify_published(p)
            return onnx_state_dict(p, self)[0]
        from emovid.models.checkpoint import load_state_dict_file

        return load_state_dict_file(p)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


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
