"""EmoNeXt: ConvNeXt with a spatial-transformer pre-processor, SE blocks and a self-attention regulariser.

Facts from the reference implementation (``yelboudouri/EmoNeXt`` ``models.py`` / ``train.py``, El Boudouri & Bohi,
MMSP 2023), rebuilt here on ``transformers``' :class:`~transformers.ConvNextModel` (no timm/torchvision):

* **STN**: ``localization`` = Conv2d(3, 8, 7), BN, MaxPool 2, ReLU, Conv2d(8, 10, 5), BN, MaxPool 2, ReLU; ``fc_loc``
  = Linear(10 * 52 * 52, 32), ReLU, Linear(32, 6) predicting a 2x3 affine ``theta`` (last layer initialised to zero
  weights and the identity bias), applied with ``affine_grid``/``grid_sample`` (``align_corners=True``). The
  52 x 52 comes from 224 x 224 inputs; other input sizes are resized for the localisation branch only.
* **ConvNeXt** trunk (FB ConvNeXt layout; tiny/small/base/large dims) with a **Squeeze-and-Excitation** layer
  (``fc`` = Linear(C, C/16, no bias), ReLU, Linear(C/16, C, no bias), Sigmoid) after the conv of each of the three
  downsampling layers (here appended to ``convnext.encoder.stages.{1,2,3}.downsampling_layer``).
* Embedding = final LayerNorm of the globally pooled last stage (``forward_head(forward_features(x),
  pre_logits=True)``; ``forward_features`` is the unpooled map): 1024-d for ConvNeXt-Base;
  the original recipe stacks 30 face crops into a 30 x 1024 matrix (:meth:`EmoNeXt.forward_frames`).
* **Self-attention** (``attention``: LayerNorm + query/key/value Linear, scores scaled by ``dim ** -0.25``) runs
  over the batch's embeddings only to add the regulariser ``mean((w - mean(w)) ** 2)`` of its attention weights to
  the loss (:meth:`EmoNeXt.attention_loss`); the logits use the embedding itself, so the attention does not change
  ``forward_features``/``forward``.
* Preprocessing in EmoNeXt's ``train.py``: greyscale (PIL ``L``) repeated to 3 channels, resize short side to 236,
  crop 224, ``ToTensor`` without mean/std normalisation. ``grayscale=True`` (default) converts RGB inputs to the
  same luma inside the model; ``pretrained_cfg`` has mean 0 / std 1 and ``short_side=236``.
* Initialisation: ImageNet ConvNeXt weights (``get_model`` loads FB's ``convnext_*_224.pth`` with ``strict=False``),
  leaving STN, SE and attention at their init. The same weights exist as Hugging Face folders
  (``facebook/convnext-base-224`` is converted from ``convnext_base_1k_224_ema.pth``, ``...-224-22k`` from
  ``convnext_base_22k_224.pth``; transformers' ``convert_convnext_to_pytorch.py``).

Checkpoints that load (:func:`emonext_filter_fn`): Hugging Face ConvNext folders/files (``convnext.*`` or bare
ConvNextModel keys, ``classifier``), FB ConvNeXt / EmoNeXt files (``{"model": ...}`` with ``downsample_layers``,
``stages.i.j.dwconv``, ``gamma``, ``norm``, ``head`` — EmoNeXt's own training checkpoints use this layout) and timm
ConvNeXt (``stem``, ``stages.i.downsample``, ``blocks.j.conv_dw``, ``mlp.fc1``, ``head.norm``/``head.fc``). A plain
ConvNeXt checkpoint (no STN/SE/attention keys) initialises the trunk and the EmoNeXt-only parts keep their init;
the classifier is kept only when it has the model's ``num_classes``. EmoNeXt publishes no trained weights.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.errors import ModelError
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model

log = logging.getLogger(__name__)

__all__ = ["EmoNeXt", "emonext_filter_fn"]

_LUMA = (0.299, 0.587, 0.114)  # PIL "L" (ITU-R 601-2), what torchvision's Grayscale uses on PIL images


class SqueezeExcite(nn.Module):
    """EmoNeXt's SELayer: channel gates from the pooled map (``fc.0``/``fc.2`` without bias)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((-2, -1)))[:, :, None, None]


class DotProductSelfAttention(nn.Module):
    """EmoNeXt's attention over a set of embeddings ``[N, D]``; returns ``(attended + normed input, weights)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(x)
        scores = self.query(x) @ self.key(x).transpose(-2, -1) / math.sqrt(math.sqrt(self.dim))
        weights = scores.softmax(-1)
        return weights @ self.value(x) + x, weights


class EmoNeXt(Backbone):
    """EmoNeXt face-crop encoder (see the module docstring).

    Args:
        depths: blocks per ConvNeXt stage.
        dims: channels per stage; ``num_features = dims[-1]``.
        in_chans: input channels.
        num_classes: outputs of the linear head (0: ``forward`` returns the embedding).
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth (EmoNeXt trains with 0.1).
        layer_scale_init_value: ConvNeXt layer-scale init.
        se_reduction: SE bottleneck ratio (16 in EmoNeXt); 0 builds a plain ConvNeXt trunk.
        stn: use the spatial transformer.
        stn_size: input side the localisation net is built for (224 in EmoNeXt: 10 x 52 x 52 features).
        grayscale: convert RGB inputs to luma repeated over 3 channels, as EmoNeXt's preprocessing.
    """

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 27, 3),
        dims: tuple[int, ...] = (128, 256, 512, 1024),
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        se_reduction: int = 16,
        stn: bool = True,
        stn_size: int = 224,
        grayscale: bool = True,
    ):
        super().__init__()
        from transformers import ConvNextConfig, ConvNextModel

        self.in_chans = in_chans
        self.grayscale = grayscale and in_chans == 3
        self.use_stn = stn
        self.stn_size = stn_size
        self.localization = nn.Sequential(
            nn.Conv2d(in_chans, 8, kernel_size=7),
            nn.BatchNorm2d(8),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.BatchNorm2d(10),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
        )
        side = ((stn_size - 6) // 2 - 4) // 2
        if side < 1:
            raise ModelError(f"stn_size={stn_size} is too small for EmoNeXt's localisation net (needs >= 16)")
        self.fc_loc = nn.Sequential(nn.Linear(10 * side * side, 32), nn.ReLU(True), nn.Linear(32, 6))
        config = ConvNextConfig(
            num_channels=in_chans,
            hidden_sizes=list(dims),
            depths=list(depths),
            drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            layer_norm_eps=1e-6,  # EmoNeXt's final nn.LayerNorm(dims[-1], eps=1e-6)
        )
        self.convnext = ConvNextModel(config)
        if se_reduction:
            for i in range(1, len(dims)):
                self.convnext.encoder.stages[i].downsampling_layer.append(SqueezeExcite(dims[i], se_reduction))
        self.attention = DotProductSelfAttention(dims[-1])
        self.num_features = dims[-1]
        self._init_weights()
        self.init_head(num_classes, drop_rate)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc_loc[2].weight)
        with torch.no_grad():
            self.fc_loc[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    # ---- pieces ----------------------------------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ModelError(f"EmoNeXt expects images [B, C, H, W] (or clips via forward_frames), got {tuple(x.shape)}")
        if self.grayscale and x.shape[1] == 3:
            luma = (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = luma.expand(-1, 3, -1, -1)
        return x

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The STN's affine transform ``[B, 2, 3]`` for images ``x``."""
        xs = x
        if tuple(x.shape[-2:]) != (self.stn_size, self.stn_size):
            xs = F.interpolate(x, size=(self.stn_size, self.stn_size), mode="bilinear", align_corners=False)
        return self.fc_loc(self.localization(xs).flatten(1)).view(-1, 2, 3)

    def stn(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially transform images ``[B, C, H, W]`` (identity at initialisation)."""
        grid = F.affine_grid(self.theta(x), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map ``[B, C, H/32, W/32]`` of face crops ``[B, C, H, W]`` (after the STN)."""
        x = self._prepare(x)
        if self.use_stn:
            x = self.stn(x)
        return self.convnext.encoder(self.convnext.embeddings(x)).last_hidden_state

    def forward_image(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` of face crops ``[B, C, H, W]``."""
        return self.pool_features(self.forward_map(x))

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Per-crop embeddings ``[B, T, D]`` of crop sequences ``[B, C, T, H, W]`` (the original 30 x 1024 matrix)."""
        if x.ndim != 5:
            raise ModelError(f"forward_frames expects [B, C, T, H, W], got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        feats = self.forward_image(x.transpose(1, 2).reshape(b * t, c, h, w))
        return feats.view(b, t, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled maps: ``[B, D, h, w]`` for images ``[B, C, H, W]``; ``[B, D, T, h, w]`` (one map per crop) for
        crop sequences ``[B, C, T, H, W]``."""
        if x.ndim == 5:
            b, c, t, h, w = x.shape
            fmap = self.forward_map(x.transpose(1, 2).reshape(b * t, c, h, w))
            return fmap.view(b, t, *fmap.shape[1:]).transpose(1, 2)
        return self.forward_map(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: ConvNeXt's global average and final LayerNorm; for per-crop maps ``[B, D, T, h, w]`` the mean
        of the crops' embeddings."""
        if feats.ndim == 5:
            return self.convnext.layernorm(feats.mean((-2, -1)).transpose(1, 2)).mean(1)
        return self.convnext.layernorm(feats.mean((-2, -1)))

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.convnext.encoder.stages)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem: the STN and ConvNeXt's patchify stem; blocks: each stage's downsampling layer (with its SE) then its
        ConvNeXt layers, in order (``coarse``: one group per stage); head: the final LayerNorm, the self-attention
        regulariser and the classifier."""
        if coarse:
            blocks = [(r"^convnext\.encoder\.stages\.(\d+)\.", None)]
        else:
            blocks = []
            for i in range(len(self.convnext.encoder.stages)):
                blocks.append((rf"^convnext\.encoder\.stages\.{i}\.downsampling_layer\.", 0))
                blocks.append((rf"^convnext\.encoder\.stages\.{i}\.layers\.(\d+)\.", None))
        return {
            "stem": r"^(localization|fc_loc|convnext\.embeddings)\.",
            "blocks": blocks,
            "head": r"^(convnext\.layernorm|attention|head)\.",
        }

    def attention_loss(self, features: torch.Tensor) -> torch.Tensor:
        """EmoNeXt's regulariser on a batch of embeddings ``[N, D]``: variance of the self-attention weights."""
        _, weights = self.attention(features)
        return ((weights - weights.mean()) ** 2).mean()

    def load_pretrained_dir(self, path: str | Path) -> dict:
        """Read a Hugging Face ConvNext folder, checking its ``config.json`` matches this model's stages."""
        from emovid.models.hub import state_dict_from_dir

        path = Path(path)
        cfg_file = path / "config.json"
        if cfg_file.exists():
            cfg = json.loads(cfg_file.read_text())
            own = self.convnext.config
            got = (list(cfg.get("depths", own.depths)), list(cfg.get("hidden_sizes", own.hidden_sizes)))
            if cfg.get("model_type", "convnext") != "convnext" or got != (list(own.depths), list(own.hidden_sizes)):
                raise ModelError(
                    f"folder holds a {cfg.get('model_type')} model with depths {got[0]} and hidden_sizes {got[1]}, "
                    f"but this EmoNeXt has {list(own.depths)} / {list(own.hidden_sizes)}; pick the matching "
                    "emonext_* size",
                    cfg_file,
                )
        return state_dict_from_dir(path)


# ---- checkpoint conversion ---------------------------------------------------------------------------------------

_EXTRA_PARTS = ("localization.", "fc_loc.", "attention.")  # EmoNeXt-only modules
_SE = re.compile(r"convnext\.encoder\.stages\.\d+\.downsampling_layer\.2\.")


def _from_fb(k: str) -> str | None:
    """FB ConvNeXt / EmoNeXt names -> ours (same facts as transformers' convert_convnext_to_pytorch.py)."""
    if k.startswith(_EXTRA_PARTS):
        return k
    if m := re.match(r"downsample_layers\.0\.([01])\.(.+)", k):
        return f"convnext.embeddings.{('patch_embeddings', 'layernorm')[int(m[1])]}.{m[2]}"
    if m := re.match(r"downsample_layers\.(\d+)\.(\d+)\.(.+)", k):
        return f"convnext.encoder.stages.{m[1]}.downsampling_layer.{m[2]}.{m[3]}"
    if m := re.match(r"stages\.(\d+)\.(\d+)\.(.+)", k):
        rest = {"norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias", "gamma": "layer_scale_parameter"}
        return f"convnext.encoder.stages.{m[1]}.layers.{m[2]}.{rest.get(m[3], m[3])}"
    if k.startswith("norm."):
        return "convnext.layernorm." + k[len("norm.") :]
    if k.startswith("head."):
        return k
    return None


def _from_timm(k: str) -> str | None:
    if m := re.match(r"stem\.([01])\.(.+)", k):
        return f"convnext.embeddings.{('patch_embeddings', 'layernorm')[int(m[1])]}.{m[2]}"
    if m := re.match(r"stages\.(\d+)\.downsample\.([01])\.(.+)", k):
        return f"convnext.encoder.stages.{m[1]}.downsampling_layer.{m[2]}.{m[3]}"
    if m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", k):
        rest = {
            "conv_dw.weight": "dwconv.weight",
            "conv_dw.bias": "dwconv.bias",
            "norm.weight": "layernorm.weight",
            "norm.bias": "layernorm.bias",
            "mlp.fc1.weight": "pwconv1.weight",
            "mlp.fc1.bias": "pwconv1.bias",
            "mlp.fc2.weight": "pwconv2.weight",
            "mlp.fc2.bias": "pwconv2.bias",
            "gamma": "layer_scale_parameter",
        }
        return f"convnext.encoder.stages.{m[1]}.layers.{m[2]}.{rest.get(m[3], m[3])}"
    if k.startswith("head.norm."):
        return "convnext.layernorm." + k[len("head.norm.") :]
    if k.startswith("head.fc."):
        return "head." + k[len("head.fc.") :]
    return None


def _from_hf(k: str) -> str | None:
    if k.startswith("classifier."):
        return "head." + k[len("classifier.") :]
    if k.startswith(("embeddings.", "encoder.", "layernorm.")):
        return "convnext." + k
    return k


def emonext_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Convert HF / FB-EmoNeXt / timm ConvNeXt checkpoints to :class:`EmoNeXt` keys (see the module docstring)."""
    from emovid.models.hub import unwrap_state_dict

    sd = unwrap_state_dict(state_dict, keys=("model", "state_dict", "model_state", "module"))
    if any(k.startswith("downsample_layers.") for k in sd):
        layout, convert = "FB ConvNeXt / EmoNeXt", _from_fb
    elif "stem.0.weight" in sd:
        layout, convert = "timm ConvNeXt", _from_timm
    else:
        layout, convert = "Hugging Face ConvNext", _from_hf
    out, unknown = {}, []
    for k, v in sd.items():
        new = convert(k)
        if new is None:
            unknown.append(k)
            continue
        if new.endswith(("pwconv1.weight", "pwconv2.weight")) and v.ndim == 4:  # timm conv_mlp variants
            v = v.flatten(1)
        out[new] = v
    own = model.state_dict()
    head = [k for k in out if k.startswith("head.")]
    if head and any(k not in own or own[k].shape != out[k].shape for k in head):
        log.info("dropping the checkpoint's classifier (%s); the model has num_classes=%s", layout, model.num_classes)
        for k in head:
            del out[k]
    if not any(k.startswith(_EXTRA_PARTS) or _SE.match(k) for k in out):
        # A plain ConvNeXt: the trunk comes from the checkpoint, STN / SE / attention keep the model's init.
        kept = [k for k in own if (k.startswith(_EXTRA_PARTS) or _SE.match(k)) and k not in out]
        out.update({k: own[k] for k in kept})
        if kept:
            log.info("%s checkpoint: STN, SE and attention keep their initialisation", layout)
    if unknown:
        out.update({k: sd[k] for k in unknown})  # reported as unexpected by the loader
    return out


# ---- registered models -------------------------------------------------------------------------------------------

_FB = "https://dl.fbaipublicfiles.com/convnext/"
_SOURCE = "EmoNeXt (El Boudouri & Bohi, MMSP 2023), github.com/yelboudouri/EmoNeXt; trunk: transformers ConvNext"
_LICENSE = "weights: ImageNet ConvNeXt (facebookresearch/ConvNeXt, MIT); EmoNeXt repo has no licence file"


def _weights(size: str, hf_1k: str | None, hf_22k: str | None) -> dict[str, WeightSource]:
    w: dict[str, WeightSource] = {}
    if hf_1k:
        w["in1k"] = WeightSource(hf_hub_id=hf_1k, license="apache-2.0", description="ImageNet-1k ConvNeXt (HF)")
    if hf_22k:
        w["in22k"] = WeightSource(hf_hub_id=hf_22k, license="apache-2.0", description="ImageNet-22k ConvNeXt (HF)")
    ema = "_ema" if size in ("tiny", "small", "base") else ""
    w["fb_in1k"] = WeightSource(
        url=f"{_FB}convnext_{size}_1k_224{ema}.pth",
        filename=f"convnext_{size}_1k_224{ema}.pth",
        license="MIT",
        description="ImageNet-1k ConvNeXt, the file EmoNeXt's get_model() loads",
    )
    w["fb_in22k"] = WeightSource(
        url=f"{_FB}convnext_{size}_22k_224.pth",
        filename=f"convnext_{size}_22k_224.pth",
        license="MIT",
        description="ImageNet-22k ConvNeXt, the file EmoNeXt's get_model(in_22k=True) loads",
    )
    return w


def _cfg(weights: dict[str, WeightSource], default_tag: str | None) -> PretrainedCfg:
    return PretrainedCfg(
        num_frames=1,
        input_size=(224, 224),
        short_side=236,
        mean=(0.0, 0.0, 0.0),  # EmoNeXt feeds ToTensor() output without normalisation
        std=(1.0, 1.0, 1.0),
        face_crop=True,
        weights=weights,
        default_tag=default_tag,
        license=_LICENSE,
        source=_SOURCE,
    )


_BASE_CFG = _cfg(_weights("base", "facebook/convnext-base-224", "facebook/convnext-base-224-22k"), "in22k")
_SMALL_CFG = _cfg(_weights("small", "facebook/convnext-small-224", None), "fb_in22k")
_TINY_CFG = _cfg(_weights("tiny", "facebook/convnext-tiny-224", None), "fb_in22k")


@register_model(pretrained_cfg=_BASE_CFG, filter_fn=emonext_filter_fn)
def emonext_base(**kwargs) -> EmoNeXt:
    """EmoNeXt on ConvNeXt-Base (dims 128/256/512/1024, depths 3/3/27/3): 1024-d embedding per face crop."""
    return EmoNeXt(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), **kwargs)


@register_model(pretrained_cfg=_SMALL_CFG, filter_fn=emonext_filter_fn)
def emonext_small(**kwargs) -> EmoNeXt:
    """EmoNeXt on ConvNeXt-Small (dims 96..768, depths 3/3/27/3): 768-d embedding."""
    return EmoNeXt(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), **kwargs)


@register_model(pretrained_cfg=_TINY_CFG, filter_fn=emonext_filter_fn)
def emonext_tiny(**kwargs) -> EmoNeXt:
    """EmoNeXt on ConvNeXt-Tiny (dims 96..768, depths 3/3/9/3; EmoNeXt README's example): 768-d embedding."""
    return EmoNeXt(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), **kwargs)


_TEST_CFG = _cfg({}, None).replace(input_size=(64, 64), short_side=64)


@register_model(pretrained_cfg=_TEST_CFG, filter_fn=emonext_filter_fn)
def test_emonext(**kwargs) -> EmoNeXt:
    """Tiny EmoNeXt for tests (dims 8/16/32/64, depths 1/1/2/1, STN built for 64x64)."""
    opts = {"stn_size": 64, **kwargs}
    return EmoNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), **opts)
