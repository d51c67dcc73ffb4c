"""X3D (Feichtenhofer 2020, "X3D: Expanding Architectures for Efficient Video Recognition") — RankNet-X3D's backbone.

The module tree and state-dict keys are those of pytorchvideo's ``pytorchvideo.models.x3d.create_x3d``, so the
released Kinetics-400 checkpoints ``X3D_XS/S/M/L.pyth`` (weights under ``"model_state"``) load with
``strict=True``::

    blocks.0          stem: conv.conv_t (1x3x3 spatial), conv.conv_xy (5x1x1 depthwise temporal), norm
    blocks.1 .. 4     res stages: res_blocks.N.{branch1_conv, branch1_norm, branch2.{conv_a, norm_a, conv_b,
                      norm_b.0 (BN), norm_b.1.block.{0,2} (squeeze-excitation), conv_c, norm_c}}
    blocks.5          head: pool.{pre_conv, pre_norm, post_conv}, proj (the Kinetics classifier)

Two deliberate differences from pytorchvideo, both invisible to the weights:

* the head pools globally (adaptive) instead of with an ``AvgPool3d`` whose kernel is fixed to the training
  crop, so any clip length and frame size works; at the native geometry the two are the same average;
* ``forward`` returns logits (pytorchvideo's head applies softmax); ``forward_features`` returns the last stage's
  map and ``forward_head(..., pre_logits=True)`` the 2048-d penultimate features — after the head's
  pre_conv/pool/post_conv and ReLU, before dropout and ``proj`` — the embedding RankNet-X3D's
  ``IntensityScorer.feature_extractor`` exposes.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model
from emovid.video.transforms import KINETICS_MEAN, KINETICS_STD

log = logging.getLogger(__name__)

__all__ = ["X3D", "round_width", "round_repeats", "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "test_x3d"]

_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"
_SOURCE = "Feichtenhofer, X3D, CVPR 2020 (arXiv:2004.04730); layout of pytorchvideo.models.x3d.create_x3d"


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """Channel count ``width * multiplier`` rounded to a multiple of ``divisor`` (the X3D/pytorchvideo rule)."""
    if not multiplier:
        return int(width)
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:  # never round down by more than 10%
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks in a stage after depth expansion."""
    return int(math.ceil(multiplier * repeats)) if multiplier else repeats


def _bn(channels: int, eps: float, momentum: float) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=eps, momentum=momentum)


class _Conv2plus1d(nn.Module):
    """The stem's factorised convolution.

    pytorchvideo builds it with the *spatial* 1x3x3 conv stored as ``conv_t`` and the depthwise temporal 5x1x1
    conv as ``conv_xy`` (and runs ``conv_t`` first); the names are kept because the checkpoints use them.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        kt, kh, kw = kernel
        self.conv_t = nn.Conv3d(
            in_chans,
            out_chans,
            (1, kh, kw),
            stride=(1, stride[1], stride[2]),
            padding=(0, kh // 2, kw // 2),
            bias=False,
        )
        self.conv_xy = nn.Conv3d(
            out_chans, out_chans, (kt, 1, 1), stride=(stride[0], 1, 1), padding=(kt // 2, 0, 0), groups=out_chans,
            bias=False,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.conv_t(x))


class _Stem(nn.Module):
    def __init__(self, in_chans: int, out_chans: int, eps: float, momentum: float):
        super().__init__()
        self.conv = _Conv2plus1d(in_chans, out_chans, (5, 3, 3), (1, 2, 2))
        self.norm = _bn(out_chans, eps, momentum)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class SqueezeExcitation(nn.Module):
    """Channel gating from the clip-wide mean (fvcore's ``SqueezeExcitation(is_3d=True)`` layout: ``block.0/2``)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv3d(reduced, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class _Bottleneck(nn.Module):
    """1x1x1 conv -> BN -> ReLU -> 3x3x3 depthwise conv -> BN (-> SE) -> Swish -> 1x1x1 conv -> BN."""

    def __init__(self, dim_in, dim_inner, dim_out, stride, se_ratio, eps, momentum):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.norm_a = _bn(dim_inner, eps, momentum)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, 3, stride=stride, padding=1, groups=dim_inner, bias=False)
        se = SqueezeExcitation(dim_inner, round_width(dim_inner, se_ratio)) if se_ratio > 0 else nn.Identity()
        self.norm_b = nn.Sequential(_bn(dim_inner, eps, momentum), se)
        self.act_b = nn.SiLU()  # Swish, x * sigmoid(x), as one fused kernel
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = _bn(dim_out, eps, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class _ResBlock(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, stride, se_ratio, eps, momentum):
        super().__init__()
        # As in pytorchvideo: a projection shortcut when shape changes; its BN only when channels change
        # (X3D's first stage keeps 24 channels but strides, so it has branch1_conv without branch1_norm).
        self.branch1_conv = (
            nn.Conv3d(dim_in, dim_out, 1, stride=stride, bias=False)
            if dim_in != dim_out or math.prod(stride) > 1
            else None
        )
        self.branch1_norm = nn.BatchNorm3d(dim_out) if dim_in != dim_out else None
        self.branch2 = _Bottleneck(dim_in, dim_inner, dim_out, stride, se_ratio, eps, momentum)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class _ResStage(nn.Module):
    def __init__(self, depth, dim_in, dim_inner, dim_out, stride, se_ratio, eps, momentum):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            _ResBlock(
                dim_in if i == 0 else dim_out,
                dim_inner,
                dim_out,
                stride if i == 0 else (1, 1, 1),
                se_ratio if i % 2 == 0 else 0.0,  # SE on every other block, starting with the first
                eps,
                momentum,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class _ProjectedPool(nn.Module):
    """pre_conv -> BN -> ReLU -> global average -> post_conv -> ReLU (pytorchvideo's ``ProjectedPool``)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, eps: float, momentum: float):
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.pre_norm = _bn(dim_inner, eps, momentum)
        self.pre_act = nn.ReLU(inplace=True)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_act(self.pre_norm(self.pre_conv(x)))
        # Global average instead of pytorchvideo's AvgPool3d(kernel fixed to the training crop, stride 1):
        # identical at the native geometry, and it accepts any clip size.
        x = x.mean(dim=(2, 3, 4))
        # post_conv is 1x1x1 on a 1x1x1 map, i.e. a matrix product
        return self.post_act(F.linear(x, self.post_conv.weight.flatten(1)))


class _Head(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, num_classes, drop_rate, eps, momentum):
        super().__init__()
        self.pool = _ProjectedPool(dim_in, dim_inner, dim_out, eps, momentum)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.proj = nn.Linear(dim_out, num_classes) if num_classes > 0 else nn.Identity()


class X3D(Backbone):
    """X3D with pytorchvideo's module names.

    ``forward_features`` gives the last stage's map; ``forward_head`` pools it through ``blocks.5.pool`` and, with
    a classifier, applies ``blocks.5.dropout`` and ``blocks.5.proj`` (:attr:`classifier_name`).

    Args:
        num_classes: outputs of ``blocks.5.proj``; 0 removes it (``forward`` then returns the features).
        in_chans: input channels.
        stem_dim_in: base width before ``width_factor`` (X3D's ``DIM_C1``).
        width_factor: channel expansion (2.0 for XS-L).
        depth_factor: block-count expansion (2.2 for XS/S/M, 5.0 for L).
        bottleneck_factor: inner width of bottlenecks relative to their output (2.25).
        se_ratio: squeeze-excitation width relative to the bottleneck's inner width.
        head_dim_out: width of the features (``num_features``, 2048).
        stage_depths: blocks per stage before ``depth_factor``.
        drop_rate: dropout before ``proj`` (0.5 as in the released models' training).
        norm_eps: BatchNorm epsilon.
        norm_momentum: BatchNorm momentum.
        channels_last: on CPU, run the trunk in ``channels_last_3d`` layout (oneDNN's depthwise 3D convolutions
            are about twice as fast in it at batch 8; results equal to float rounding; weights are unaffected).
    """

    classifier_name = "blocks.5.proj"

    def __init__(
        self,
        num_classes: int = 400,
        in_chans: int = 3,
        stem_dim_in: int = 12,
        width_factor: float = 2.0,
        depth_factor: float = 2.2,
        bottleneck_factor: float = 2.25,
        se_ratio: float = 0.0625,
        head_dim_out: int = 2048,
        stage_depths: tuple[int, ...] = (1, 2, 5, 3),
        drop_rate: float = 0.5,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
        channels_last: bool = True,
    ):
        super().__init__()
        stem_out = round_width(stem_dim_in, width_factor)
        blocks: list[nn.Module] = [_Stem(in_chans, stem_out, norm_eps, norm_momentum)]
        dims = [stem_dim_in]
        for _ in stage_depths[1:]:
            dims.append(round_width(dims[-1], 2.0))
        dim_in = stem_out
        dim_inner = dim_in
        for depth, base in zip(stage_depths, dims, strict=True):
            dim_out = round_width(base, width_factor)
            dim_inner = int(bottleneck_factor * dim_out)
            blocks.append(
                _ResStage(
                    round_repeats(depth, depth_factor),
                    dim_in,
                    dim_inner,
                    dim_out,
                    (1, 2, 2),
                    se_ratio,
                    norm_eps,
                    norm_momentum,
                )  # fmt: skip
            )
            dim_in = dim_out
        blocks.append(_Head(dim_in, dim_inner, head_dim_out, num_classes, drop_rate, norm_eps, norm_momentum))
        self.blocks = nn.ModuleList(blocks)
        self.num_features = head_dim_out
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.channels_last = channels_last
        self.apply(_init_weights)

    @property
    def head_drop(self) -> nn.Module:
        # pytorchvideo's dropout sits in front of proj; without a classifier the features come out undropped
        return self.blocks[5].dropout if self.num_classes > 0 else _NO_DROP

    @property
    def head(self) -> nn.Module:
        """The classifier, ``blocks.5.proj`` (pytorchvideo's name, kept for its checkpoints)."""
        return self.get_classifier()

    def new_classifier(self, num_classes: int) -> nn.Module:
        proj = nn.Linear(self.num_features, num_classes)
        _init_weights(proj)
        return proj

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages: the last feature map ``[B, C, T, H/32, W/32]``."""
        if self.channels_last and x.device.type == "cpu" and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for block in self.blocks[:5]:
            x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` normalised clip -> the last stage's map ``[B, C, T, H/32, W/32]`` (unpooled)."""
        return self.forward_trunk(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The head's pre_conv / global average / post_conv: the ``[B, num_features]`` penultimate features."""
        return self.blocks[5].pool(feats)

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.blocks[1:5])

    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem ``blocks.0``; blocks: each residual block of ``blocks.1..4`` in order (``coarse``: each stage);
        head: ``blocks.5`` (projected pool and classifier)."""
        stages = range(1, len(self.blocks) - 1)
        if coarse:
            blocks = [(r"^blocks\.(\d+)\.res_blocks\.", None)]
        else:
            blocks = [(rf"^blocks\.{s}\.res_blocks\.(\d+)\.", None) for s in stages]
        return {"stem": r"^blocks\.0\.", "blocks": blocks, "head": rf"^blocks\.{len(self.blocks) - 1}\."}


_NO_DROP = nn.Identity()


def _init_weights(m: nn.Module) -> None:
    # pytorchvideo's ResNet-style init (c2_msra_fill for convs, N(0, 0.01) classifier), so training from scratch
    # starts where the reference does; PyTorch's default conv init shrinks activations layer by layer, which in
    # eval mode drives a random X3D into denormal floats (a 10-20x CPU slowdown).
    if isinstance(m, nn.Conv3d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm3d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.01)
        nn.init.zeros_(m.bias)


_PROJ_KEYS = ("blocks.5.proj.weight", "blocks.5.proj.bias")


def _filter_x3d(raw: object, model: nn.Module) -> dict:
    """pytorchvideo/emovid checkpoint -> state dict for ``model``.

    Unwraps ``"model_state"`` (and other common wrappers); when the model's classifier differs from the
    checkpoint's (another ``num_classes``, or none), the checkpoint's ``proj`` is dropped and the model keeps its
    freshly initialised one, so everything else still loads strictly.
    """
    from emovid.models.hub import unwrap_state_dict

    sd = unwrap_state_dict(raw)
    own = model.state_dict()
    replaced = False
    for k in _PROJ_KEYS:
        if k in sd and (k not in own or own[k].shape != sd[k].shape):
            replaced = True
            if k in own:
                sd[k] = own[k]
            else:
                del sd[k]
    if replaced:
        log.info("X3D checkpoint classifier not used: model has num_classes=%s", getattr(model, "num_classes", "?"))
    return sd


def _cfg(variant: str, frames: int, stride: int, crop: int, short_side: int, top1: float) -> PretrainedCfg:
    fname = f"X3D_{variant.upper()}.pyth"
    return PretrainedCfg(
        num_frames=frames,
        frame_stride=stride,
        input_size=(crop, crop),
        short_side=short_side,
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        face_crop=False,
        num_classes=400,
        weights={
            "k400": WeightSource(
                url=f"{_ZOO}/{fname}",
                filename=fname,
                license="Apache-2.0",
                description=f"PyTorchVideo model zoo, Kinetics-400, {frames}x{stride}, top-1 {top1} (3x10 views)",
            )
        },
        default_tag="k400",
        license="Apache-2.0",
        source=_SOURCE,
    )


# Clip geometry: frames x stride from the PyTorchVideo model zoo; training crop from create_x3d's docstring and
# PySlowFast's X3D configs (TRAIN_CROP_SIZE), short side = the lower end of their TRAIN_JITTER_SCALES
# (also their 3-crop TEST_CROP_SIZE).
_XS = _cfg("xs", 4, 12, 160, 182, 69.12)
_S = _cfg("s", 13, 6, 160, 182, 73.33)
_M = _cfg("m", 16, 5, 224, 256, 75.94)
_L = _cfg("l", 16, 5, 312, 356, 77.44)
_TEST = PretrainedCfg(
    num_frames=4, frame_stride=2, input_size=(32, 32), mean=KINETICS_MEAN, std=KINETICS_STD, source=_SOURCE
)


def _build(cfg: PretrainedCfg, num_frames: int | None, input_size: int | tuple[int, int] | None, **kwargs) -> X3D:
    model = X3D(**kwargs)
    changes: dict = {}
    if num_frames is not None:
        changes["num_frames"] = int(num_frames)
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        changes["input_size"] = size
        changes["short_side"] = round(min(size) * (cfg.short_side or min(cfg.input_size)) / min(cfg.input_size))
    model.pretrained_cfg = cfg.replace(**changes) if changes else cfg
    return model


@register_model(pretrained_cfg=_XS, family="x3d", filter_fn=_filter_x3d)
def x3d_xs(num_classes: int = 400, num_frames: int | None = None, input_size=None, **kwargs) -> X3D:
    """X3D-XS: 4 frames x stride 12 at 160 px, 3.8 M parameters."""
    return _build(_XS, num_frames, input_size, num_classes=num_classes, **kwargs)


@register_model(pretrained_cfg=_S, family="x3d", filter_fn=_filter_x3d)
def x3d_s(num_classes: int = 400, num_frames: int | None = None, input_size=None, **kwargs) -> X3D:
    """X3D-S: 13 frames x stride 6 at 160 px, 3.8 M parameters (RankNet-X3D's choice)."""
    return _build(_S, num_frames, input_size, num_classes=num_classes, **kwargs)


@register_model(pretrained_cfg=_M, family="x3d", filter_fn=_filter_x3d)
def x3d_m(num_classes: int = 400, num_frames: int | None = None, input_size=None, **kwargs) -> X3D:
    """X3D-M: 16 frames x stride 5 at 224 px, 3.8 M parameters."""
    return _build(_M, num_frames, input_size, num_classes=num_classes, **kwargs)


@register_model(pretrained_cfg=_L, family="x3d", filter_fn=_filter_x3d)
def x3d_l(num_classes: int = 400, num_frames: int | None = None, input_size=None, **kwargs) -> X3D:
    """X3D-L: 16 frames x stride 5 at 312 px, depth factor 5.0, 6.2 M parameters."""
    kwargs.setdefault("depth_factor", 5.0)
    return _build(_L, num_frames, input_size, num_classes=num_classes, **kwargs)


@register_model(pretrained_cfg=_TEST, family="x3d", filter_fn=_filter_x3d)
def test_x3d(num_classes: int = 0, num_frames: int | None = None, input_size=None, **kwargs) -> X3D:
    """Tiny X3D for tests: same code paths (stem, SE, shortcuts, head), 32-d features."""
    arch = {"width_factor": 1.0, "depth_factor": 0.5, "stem_dim_in": 8, "head_dim_out": 32, "drop_rate": 0.0}
    arch.update(kwargs)
    return _build(_TEST, num_frames, input_size, num_classes=num_classes, **arch)
