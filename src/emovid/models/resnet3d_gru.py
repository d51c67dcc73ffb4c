"""VAERR's video front-end (VAERR): a 3D-conv stem, a ResNet-18 trunk applied to every frame, and a GRU over time.

Architecture and state-dict keys follow the lipreading code VAERR builds on (``mpc001/
Lipreading_using_Temporal_Convolutional_Networks`` ``lipreading/model.py`` + ``models/resnet.py``) and VAERR's own
downstream model (``Instassa/VAERR_SelfSupervisedVE`` ``model/modelVideoClassReg.py``, ``model/resnet.py``,
``model/gru.py``):

* ``frontend3D``: ``Conv3d(in, 64, (5, 7, 7), stride (1, 2, 2), padding (2, 3, 3), bias=False)``, ``BatchNorm3d``,
  ReLU / PReLU / Swish, ``MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))``; the time axis keeps its length.
* ``trunk``: ResNet-18 without its own stem (``layer1``..``layer4`` of BasicBlocks with ``conv1 bn1 relu1 conv2 bn2
  relu2`` and ``downsample.0/1``), global average pool, giving 512 features per frame.
* ``gru`` (only in ``resnet18_3dstem_gru``): VAERR's wrapper holding ``gru.gru = nn.GRU(512, 256, num_layers=2,
  bidirectional=True, batch_first=True)``, so its outputs are 512-d per frame. VAERR's per-frame classifier
  ``gru.fc`` becomes this model's ``head``; VAERR's second, unused ``gru2`` is dropped when loading.

Inputs are clips ``[B, C, T, H, W]``. VAERR and the lipreading models use greyscale (``in_chans=1``) 88x88 crops
normalised with mean 0.421 / std 0.165. A 1-channel model given RGB clips converts them to luminance (ITU-R
BT.601 weights, as OpenCV/PIL greyscale); the conversion is linear, so it commutes with the per-channel
normalisation from :func:`~emovid.models.create_transform`. ``in_chans=3`` builds an RGB stem.

Outputs:

* ``forward_sequence(x, lengths=None) -> [B, T, D]``: one feature per frame (for per-frame valence/arousal
  regression, apply the classifier per frame: ``model.get_classifier()(model.forward_sequence(x))``);
* ``forward_features(x, lengths=None) -> [B, T, D]``: the same per-frame features (unpooled);
* ``forward_head(feats, pre_logits=True, lengths=None) -> [B, D]``: their mean over the (valid) frames
  (:func:`emovid.models.base.pooled` does both steps);
* ``forward(x)``: the head on that mean.

``D`` is 512 for the front-end alone (``resnet18_3dstem``) and ``2 * gru_hidden`` (512) with the GRU.

Loading pretext checkpoints (``--model-path ckpt_3Dconv.pth --allow-size-mismatch`` in VAERR):
:func:`vaerr_filter_fn` unwraps the wrappers VAERR's ``utils2.load_model`` reads (``"netG"``, ``"state_dict"``,
DINO's ``"student"``) and the lipreading code's ``"model_state_dict"``, strips DDP ``module.``, DINO's
MultiCropWrapper ``backbone.`` and BYOL (lucidrains) ``net.``/``online_encoder.net.`` prefixes, and keeps only keys
of modules this model has (pretext heads such as the lipreading ``tcn``, DINO's ``head``, BYOL's projector/
predictor are dropped). A 1-channel stem loaded into a 3-channel model is replicated and divided by 3 (so a grey
clip copied to RGB gives the same features); a 3-channel stem loaded into a 1-channel model is summed over
channels. A pretext checkpoint has no GRU: load it into ``resnet18_3dstem_gru`` with ``strict=False`` (VAERR's
``--allow-size-mismatch`` also turns strict loading off) or into ``resnet18_3dstem`` strictly.

Published weights: VAERR publishes no checkpoints (its README points to LiRA's private repository, BYOL and DINO
code); the mpc001 LRW lipreading models (``resnet18_mstcn_video`` etc., Swish activations) are behind Google-Drive
links, so none is registered for download. Download one by hand and pass its path as ``pretrained`` with
``relu_type="swish"`` (their front-end loads strictly into ``resnet18_3dstem``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from emovid.errors import ModelError
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, register_model

log = logging.getLogger(__name__)

__all__ = ["ResNet3DStem", "ResNet3DStemGRU", "vaerr_filter_fn"]

# ITU-R BT.601 luma, the weights of cv2.COLOR_RGB2GRAY and PIL's "L" mode.
_LUMA = (0.299, 0.587, 0.114)
# Lipreading/LRW (and VAERR's SEWA) greyscale normalisation: lipreading/dataloaders.py.
LIPREADING_MEAN = (0.421,)
LIPREADING_STD = (0.165,)


def _act(relu_type: str, channels: int) -> nn.Module:
    if relu_type == "relu":
        return nn.ReLU(inplace=True)
    if relu_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    if relu_type == "swish":  # the lipreading code's Swish is x * sigmoid(x)
        return nn.SiLU()
    raise ModelError(f"relu_type must be 'relu', 'prelu' or 'swish', not {relu_type!r}")


class BasicBlock(nn.Module):
    """ResNet BasicBlock with the lipreading code's attribute names (``relu1``/``relu2`` may hold PReLU weights)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, relu_type: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = _act(relu_type, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = _act(relu_type, planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + residual)


class ResNetTrunk(nn.Module):
    """ResNet layers 1-4 and global pooling, without a stem (the 3D front-end is the stem)."""

    def __init__(self, inplanes: int, widths: tuple[int, ...], depths: tuple[int, ...], relu_type: str):
        super().__init__()
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(d):
                blocks.append(BasicBlock(inplanes, w, stride=2 if (i > 0 and j == 0) else 1, relu_type=relu_type))
                inplanes = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_layers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.avgpool(x).flatten(1)


class TemporalGRU(nn.Module):
    """VAERR's GRU wrapper: the ``nn.GRU`` lives at ``.gru`` so keys read ``gru.gru.weight_ih_l0`` as in VAERR."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            return self.gru(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class ResNet3DStem(Backbone):
    """3D-conv stem + per-frame ResNet trunk (VAERR's pretrained, shared part); features averaged over time.

    Args:
        in_chans: input channels (1 = greyscale as in VAERR/lipreading; 3 = RGB).
        relu_type: ``"relu"`` (VAERR's default), ``"prelu"`` (lipreading default) or ``"swish"`` (LRW model zoo).
        stem_channels: output channels of the 3D conv (64 in the reference).
        widths: channels of ``layer1``..``layer4``.
        depths: BasicBlocks per layer (``(2, 2, 2, 2)`` = ResNet-18).
        num_classes: outputs of the linear head (0: ``forward`` returns the embedding).
        drop_rate: dropout before the head.
    """

    def __init__(
        self,
        in_chans: int = 1,
        relu_type: str = "relu",
        stem_channels: int = 64,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 0,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.relu_type = relu_type
        self.frontend3D = nn.Sequential(
            nn.Conv3d(in_chans, stem_channels, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(stem_channels),
            _act(relu_type, stem_channels),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk(stem_channels, tuple(widths), tuple(depths), relu_type)
        self.frame_features = widths[-1]
        self.num_features = self._sequence_dim()
        self._init_weights()
        self.init_head(num_classes, drop_rate)

    def _sequence_dim(self) -> int:
        return self.frame_features

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise LR decay (:mod:`emovid.train.optim`): the 3D-conv front-end is the stem,
        ``trunk.layer1``..``layer4`` the blocks (one group per layer at either granularity), then the GRU (when
        there is one) as the last block; the head is the classifier."""
        return {
            "stem": r"^frontend3D\.",
            "blocks": [(r"^trunk\.layer(\d+)\.", None), (r"^gru\.", 99)],
            "head": r"^head\.",
        }

    def feature_blocks(self) -> list[nn.Module]:
        """``trunk.layer1``..``layerN`` (per frame: ``[B * T, C, h, w]``), then the GRU when there is one."""
        layers = [getattr(self.trunk, f"layer{i + 1}") for i in range(self.trunk.num_layers)]
        return layers + ([self.gru] if hasattr(self, "gru") else [])

    def _init_weights(self) -> None:
        # The reference's init: conv weights ~ N(0, sqrt(2 / (prod(kernel) * out_channels))), BN = (1, 0).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                n = m.out_channels
                for k in m.kernel_size:
                    n *= k
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _match_channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ModelError(f"{type(self).__name__} expects clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        c = x.shape[1]
        if c == self.in_chans:
            return x
        if self.in_chans == 1 and c == 3:
            w = x.new_tensor(_LUMA).view(1, 3, 1, 1, 1)
            return (x * w).sum(1, keepdim=True)
        if self.in_chans == 3 and c == 1:
            return x.expand(-1, 3, -1, -1, -1)
        raise ModelError(f"{type(self).__name__} has in_chans={self.in_chans} but the clip has {c} channels")

    def frame_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Front-end + trunk features per frame, ``[B, T, 512]``."""
        x = self.frontend3D(self._match_channels(x))
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.trunk(x).view(b, t, -1)

    def forward_sequence(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame features ``[B, T, D]``; ``lengths`` (``[B]``) marks the valid frames of padded clips."""
        return self.frame_embeddings(x)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame features ``[B, T, D]`` (unpooled; :meth:`forward_sequence`)."""
        return self.forward_sequence(x, lengths)

    def pool_features(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Clip embedding ``[B, D]``: per-frame features averaged over the valid frames (all, or ``lengths``)."""
        if lengths is None:
            return feats.mean(1)
        lengths = torch.as_tensor(lengths, device=feats.device)
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]
        return (feats * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(feats.dtype)


class ResNet3DStemGRU(ResNet3DStem):
    """VAERR's downstream model: :class:`ResNet3DStem` followed by a (bidirectional) GRU over time.

    Args:
        gru_hidden: hidden units per direction (VAERR: 256).
        gru_layers: stacked GRU layers (VAERR: 2).
        bidirectional: VAERR's GRU is bidirectional.
        **kwargs: see :class:`ResNet3DStem`.
    """

    def __init__(self, gru_hidden: int = 256, gru_layers: int = 2, bidirectional: bool = True, **kwargs):
        self._gru_cfg = (gru_hidden, gru_layers, bidirectional)
        num_classes = kwargs.pop("num_classes", 0)
        drop_rate = kwargs.pop("drop_rate", 0.0)
        super().__init__(num_classes=0, **kwargs)
        self.gru = TemporalGRU(self.frame_features, gru_hidden, gru_layers, bidirectional)
        self.init_head(num_classes, drop_rate)

    def _sequence_dim(self) -> int:
        hidden, _, bidir = self._gru_cfg
        return hidden * (2 if bidir else 1)

    def forward_sequence(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """GRU outputs per frame ``[B, T, D]``; with ``lengths`` the GRU runs on packed sequences (padding ignored)."""
        seq = self.frame_embeddings(x)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.int64)
        return self.gru(seq, lengths)


# ---- loading pretext / downstream checkpoints --------------------------------------------------------------------

# Wrapper keys, in VAERR's order (utils2.load_model: netG -> state_dict -> student), then lipreading's and generic ones.
_WRAPPER_KEYS = ("netG", "state_dict", "student", "model_state_dict", "model", "module")
# Prefixes put around the backbone by training wrappers: DDP, DINO's MultiCropWrapper, BYOL (lucidrains).
_ANCHORS = ("frontend3D.", "trunk.", "gru.gru.")
_SECONDARY = ("target", "teacher", "ema", "momentum")  # EMA copies: used only when no online copy exists


def _split_prefix(key: str) -> tuple[str, str] | None:
    for anchor in _ANCHORS:
        if key.startswith(anchor):
            return "", key
        i = key.find("." + anchor)
        if i >= 0:
            return key[: i + 1], key[i + 1 :]
    return None


def vaerr_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Convert a VAERR / lipreading / BYOL / DINO checkpoint to this model's keys (see the module docstring).

    Raises:
        ModelError: no front-end keys found, or the checkpoint's activations (PReLU) differ from the model's.
    """
    from emovid.models.hub import unwrap_state_dict

    sd = unwrap_state_dict(state_dict, keys=_WRAPPER_KEYS)
    # Group the keys by the wrapper prefix in front of the backbone; pick the online copy, then the shortest prefix.
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        split = _split_prefix(k)
        if split is not None:
            groups.setdefault(split[0], {})[split[1]] = v
    if not groups:
        raise ModelError(
            f"checkpoint has no frontend3D/trunk keys (first keys: {', '.join(list(sd)[:4])}); "
            "is it a VAERR / lipreading 3D-conv + ResNet checkpoint?"
        )

    def rank(prefix: str) -> tuple[int, int, int]:
        return (any(s in prefix for s in _SECONDARY), -len(groups[prefix]), len(prefix))

    prefix = min(groups, key=rank)
    body = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    # The per-frame VAERR classifier becomes our head; everything the model lacks (gru2, tcn, projectors) goes.
    if "gru.fc.weight" in body:
        body["head.weight"] = body.pop("gru.fc.weight")
        body["head.bias"] = body.pop("gru.fc.bias")
    own = model.state_dict()
    dropped = sorted({k.split(".")[0] for k in body if k not in own})
    out = {k: v for k, v in body.items() if k in own}
    prelu_ckpt = any(k.endswith(("relu1.weight", "frontend3D.2.weight")) for k in body)
    prelu_model = getattr(model, "relu_type", "relu") == "prelu"
    if prelu_ckpt != prelu_model:
        want = "prelu" if prelu_ckpt else "relu' or 'swish"
        raise ModelError(
            f"checkpoint {'has' if prelu_ckpt else 'lacks'} PReLU activation weights but the model uses "
            f"relu_type={getattr(model, 'relu_type', '?')!r}; create it with relu_type='{want}'"
        )
    stem = "frontend3D.0.weight"
    if stem in out and stem in own and out[stem].shape[1] != own[stem].shape[1]:
        w, want = out[stem], own[stem].shape[1]
        if w.shape[1] == 1:
            out[stem] = w.repeat(1, want, 1, 1, 1) / want
        elif want == 1:
            out[stem] = w.sum(1, keepdim=True)
        log.info("adapted the %d-channel 3D stem to %d input channels", w.shape[1], want)
    if dropped:
        log.info("not loading checkpoint parts absent from the model: %s", ", ".join(dropped))
    if prefix:
        log.info("read the backbone under prefix %r", prefix)
    return out


# ---- registered models -------------------------------------------------------------------------------------------

_SOURCE = (
    "VAERR (Jegorova et al., Self-supervised apparent emotion recognition from video); "
    "github.com/Instassa/VAERR_SelfSupervisedVE, front-end of github.com/mpc001/Lipreading_using_Temporal_"
    "Convolutional_Networks"
)
# VAERR trains on 4 s clips (--clip_length 4) of 25 fps face crops; lipreading crops 88x88 from 96x96 ROIs.
_CFG = PretrainedCfg(
    num_frames=100,
    frame_stride=1,
    input_size=(88, 88),
    short_side=96,
    mean=LIPREADING_MEAN,
    std=LIPREADING_STD,
    in_chans=1,
    face_crop=True,
    license="architecture only, no weights; VAERR repo has no licence file, the lipreading repo is non-commercial",
    source=_SOURCE,
)


def _finish(model: ResNet3DStem, cfg: PretrainedCfg) -> ResNet3DStem:
    if model.in_chans != cfg.in_chans:
        c = model.in_chans
        cfg = cfg.replace(in_chans=c, mean=cfg.mean[:1] * c, std=cfg.std[:1] * c)
    model.pretrained_cfg = cfg
    return model


@register_model(pretrained_cfg=_CFG, filter_fn=vaerr_filter_fn)
def resnet18_3dstem_gru(**kwargs) -> ResNet3DStemGRU:
    """VAERR: 3D-conv stem + ResNet-18 per frame + 2-layer bidirectional GRU (256 per direction); D = 512."""
    return _finish(ResNet3DStemGRU(**kwargs), _CFG)


@register_model(pretrained_cfg=_CFG, filter_fn=vaerr_filter_fn)
def resnet18_3dstem(**kwargs) -> ResNet3DStem:
    """The pretrained/shared part of VAERR (3D-conv stem + ResNet-18 per frame), mean over time; D = 512."""
    return _finish(ResNet3DStem(**kwargs), _CFG)


_TEST_CFG = _CFG.replace(num_frames=4, input_size=(32, 32), short_side=32)
_TINY = dict(stem_channels=8, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))


@register_model(pretrained_cfg=_TEST_CFG, filter_fn=vaerr_filter_fn)
def test_resnet18_3dstem_gru(**kwargs) -> ResNet3DStemGRU:
    """Tiny VAERR front-end + GRU for tests (same key layout, fewer channels/blocks)."""
    opts = {**_TINY, "gru_hidden": 8, **kwargs}
    return _finish(ResNet3DStemGRU(**opts), _TEST_CFG)


@register_model(pretrained_cfg=_TEST_CFG, filter_fn=vaerr_filter_fn)
def test_resnet18_3dstem(**kwargs) -> ResNet3DStem:
    """Tiny VAERR front-end for tests."""
    return _finish(ResNet3DStem(**{**_TINY, **kwargs}), _TEST_CFG)
