"""``facex_mobilenetv2``: the MobileNetV2 facial-expression classifier of the ``facex`` PyPI package, in PyTorch.

``facex`` 1.1.0 (Hasby Fahrudin, github.com/hfahrudin/facex; MIT licence file whose copyright holder was left as
the template's ``[fullname]``; training data not stated) ships ``facex/assets/model_optimized.tflite``: a Keras
``mobilenetv2_1.00_224`` trunk (width 1.0) run on 200 x 200 inputs, BatchNorm folded into the convolution biases
and most kernels stored as 8-bit integers, followed by ``predictis``: a dense layer on the *flattened* 6 x 6 x 1280
map (46080 -> 7, softmax). Facts read from the TFLite graph:

* every stride-2 convolution is preceded by an explicit zero pad of one pixel at the bottom/right (Keras'
  ``correct_pad`` computed for 224-pixel inputs, hence always ``(0, 1)``) and is then ``valid``: 200 -> 100 -> 50 ->
  25 -> 12 -> 6 pixels; stride-1 depthwise convolutions are ``same``; activations are ReLU6 except after the
  projections (linear); residual additions where stride is 1 and channels match (Keras MobileNetV2);
* the dense layer reads the map in NHWC order, so :meth:`FacexMobileNetV2.forward` flattens ``[B, 6, 6, 1280]``;
* preprocessing (``facex.utils.input_resize``): the grey Haar face box resized with ``skimage.transform.resize`` to
  200 x 200 x 3 (grey repeated over 3 channels), values in [0, 1]: mean 0 / std 1 in ``pretrained_cfg``;
  single-channel input is repeated to 3 channels inside the model;
* classes (``facex.core.EmotionClassifier``): anger, disgust, fear, happy, neutral, sadness, surprised. Here they are
  named like FER's (angry, disgust, fear, happy, neutral, sad, surprise) but keep facex's *order*.

No weights ship with emovid (licence holder unnamed, training data unknown, 9 MB as float32): convert your own copy
of the facex wheel with ``tools/convert_facex_weights.py`` and pass the file as ``pretrained=PATH``.
``forward_features`` is the unpooled 1280-channel map; the pooled embedding (``forward_head(map, pre_logits=True)``)
is its global average (the dense head does not use it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, register_model

__all__ = ["FACEX_LABELS", "FacexMobileNetV2"]

FACEX_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# (expansion, channels, repeats, first stride) of Keras MobileNetV2 after the first inverted residual
_SETTINGS = ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) - depthwise 3x3 (ReLU6) - project 1x1 (linear), all with folded-BN biases."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.stride = stride
        self.expand = nn.Conv2d(cin, hidden, 1) if expansion != 1 else None
        self.dw = nn.Conv2d(hidden, hidden, 3, stride, padding=0 if stride == 2 else 1, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        if self.stride == 2:
            y = F.pad(y, (0, 1, 0, 1))  # Keras correct_pad for 224-pixel inputs: bottom/right only
        y = self.project(F.relu6(self.dw(y)))
        return x + y if self.residual else y


class FacexMobileNetV2(Backbone):
    """facex's MobileNetV2 expression classifier (see the module docstring).

    Args:
        num_classes: outputs of the dense head on the flattened map (0: ``forward`` returns the embedding).
        input_size: ``(H, W)`` the dense head is built for (200 x 200 -> a 6 x 6 map).
        drop_rate: dropout before the head.
        settings: ``(expansion, channels, repeats, stride)`` per stage after the first block (MobileNetV2's).
        stem_chans: channels of the stem and of the first block's output (32, 16).
        last_chans: channels of the final 1x1 convolution (1280).
    """

    def __init__(
        self,
        num_classes: int = 7,
        input_size: tuple[int, int] = (200, 200),
        drop_rate: float = 0.0,
        settings: tuple[tuple[int, int, int, int], ...] = _SETTINGS,
        stem_chans: tuple[int, int] = (32, 16),
        last_chans: int = 1280,
    ):
        super().__init__()
        c0, c1 = stem_chans
        self.stem = nn.Conv2d(3, c0, 3, 2)
        blocks = [InvertedResidual(c0, c1, 1, 1)]
        cin = c1
        for t, c, n, s in settings:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv_last = nn.Conv2d(cin, last_chans, 1)
        self.num_features = last_chans
        h, w = input_size
        for _ in range(1 + sum(s == 2 for *_, s in settings)):  # stride-2 stages: (0, 1) pad, valid 3x3 kernel
            h, w = (h + 1 - 3) // 2 + 1, (w + 1 - 3) // 2 + 1
        self.map_size = (h, w)
        self.drop_rate = drop_rate
        self.init_head(num_classes, drop_rate)

    def new_classifier(self, num_classes: int) -> nn.Module:
        """The dense layer on the flattened (NHWC) map, as facex's ``predictis``."""
        return nn.Linear(self.map_size[0] * self.map_size[1] * self.num_features, num_classes)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1280, 6, 6]`` for 200 x 200 input in [0, 1] (1 channel is repeated to 3)."""
        if x.ndim == 5:
            x = x[:, :, 0]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.relu6(self.stem(F.pad(x, (0, 1, 0, 1))))
        return F.relu6(self.conv_last(self.blocks(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled ``[B, 1280, 6, 6]`` map (:meth:`forward_map`)."""
        return self.forward_map(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The globally averaged map, ``[B, num_features]`` (the dense head does not use it)."""
        return feats.mean((-2, -1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """From the map: the embedding (``pre_logits`` or no classifier), else the dense head's logits on the
        flattened map."""
        if pre_logits or self.num_classes == 0:
            return self.pool_features(x)
        if tuple(x.shape[-2:]) != self.map_size:
            raise ValueError(
                f"facex's dense head needs {self.map_size} maps (the input size it was built for, 200x200 for "
                f"facex_mobilenetv2); got {tuple(x.shape[-2:])}"
            )
        return self.head(self.head_drop(x.permute(0, 2, 3, 1).flatten(1)))  # TFLite flattens NHWC

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem: the first convolution; blocks: the inverted residuals; head: the last 1x1 convolution and the
        dense classifier."""
        return {"stem": r"^stem\.", "blocks": [(r"^blocks\.(\d+)\.", None)], "head": r"^(conv_last|head)\."}


_CFG = PretrainedCfg(
    num_frames=1,
    input_size=(200, 200),
    short_side=200,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    in_chans=3,
    face_crop=True,
    crop_framing="haar",
    num_classes=7,
    label_names=FACEX_LABELS,
    license="MIT (facex 1.1.0 licence file, copyright holder left blank; credit: Hasby Fahrudin)",
    source="facex 1.1.0 (PyPI, github.com/hfahrudin/facex) facex/assets/model_optimized.tflite; weights not bundled, "
    "convert with tools/convert_facex_weights.py",
    task="expression",
    training_data="not stated by the facex package",
    model_card="docs/models/facex.md",
)


@register_model(pretrained_cfg=_CFG)
def facex_mobilenetv2(**kwargs) -> FacexMobileNetV2:
    """facex's MobileNetV2 expression model (2.6 M parameters); weights: ``tools/convert_facex_weights.py``."""
    return FacexMobileNetV2(**kwargs)


@register_model(pretrained_cfg=_CFG.replace(input_size=(64, 64), short_side=64, source=_CFG.source))
def test_facex_mobilenetv2(**kwargs) -> FacexMobileNetV2:
    """Tiny facex-layout MobileNetV2 (64 x 64 input, 2 x 2 map) for tests; random init only."""
    kwargs.setdefault("input_size", (64, 64))
    kwargs.setdefault("settings", ((2, 8, 1, 2), (2, 8, 2, 1), (2, 16, 1, 2), (2, 16, 1, 2), (2, 16, 1, 2)))
    kwargs.setdefault("stem_chans", (8, 8))
    kwargs.setdefault("last_chans", 32)
    return FacexMobileNetV2(**kwargs)
