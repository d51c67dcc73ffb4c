"""VideoMAE ViT-S/B video encoders (Emodiversity) on ``transformers``' ``VideoMAEModel``.

``forward_features`` gives the final patch tokens ``[B, N, D]``; the embedding (``forward_head(tokens,
pre_logits=True)``) follows VideoMAE's fine-tuning recipe (``use_mean_pooling``): the tokens are averaged and
passed through ``fc_norm`` — exactly what ``transformers.VideoMAEForVideoClassification`` does before its
classifier.

Weights that load (``create_model(name, pretrained=...)``):

* Hugging Face folders saved by ``transformers`` (``local-dir:PATH``, a hub id or a registered tag):
  ``VideoMAEForPreTraining`` (e.g. ``MCG-NJU/videomae-base``: ``videomae.*`` + decoder, which is dropped),
  ``VideoMAEForVideoClassification`` (``videomae.*``, ``fc_norm``, ``classifier`` → ``head``) and bare
  ``VideoMAEModel``. ``config.json`` must describe the same architecture as the model being built
  (hidden size, depth, heads, MLP width, patch and tubelet size, channels, activation); otherwise a
  :class:`~emovid.errors.ModelError` says which field differs. ``layer_norm_eps`` is taken from the folder so
  outputs equal ``transformers``' own.
* The official VideoMAE ``.pth`` checkpoints (https://github.com/MCG-NJU/VideoMAE, MODEL_ZOO.md): pre-train files
  (``{"model": {"encoder.patch_embed...", "encoder.blocks.N...", "encoder.norm", "decoder.*", ...}}``, e.g.
  ``kinetics400-ViTB-1600-16x5x3-pretrain.pth``) and fine-tuned files (``{"module"|"model": {"patch_embed...",
  "blocks.N...", "fc_norm", "head"}}``). The fused ``qkv`` weight is split into query/key/value and
  ``q_bias``/``v_bias`` become the query/value biases (the key has none, as in the original).

Pre-train checkpoints carry the encoder's final per-token ``norm`` but no ``fc_norm``. Like the official
fine-tuning script (``run_class_finetuning.py`` builds the model with ``norm = Identity`` and loads the
checkpoint non-strictly), that ``norm`` is dropped and ``fc_norm`` keeps its fresh init (weight 1, bias 0).
A classifier in the checkpoint is used when the model was built with the same number of classes; otherwise
(``num_classes=0`` or another count) the model keeps its own head — a new task gets a new head.

Fine-tuning as the official recipe: ``drop_path_rate`` adds the stochastic depth ``transformers``' encoder lacks
(:func:`add_drop_path`; state-dict keys unchanged); ``group_matcher()`` tells :mod:`emovid.train.optim` the stem
(tubelet embedding) and the blocks for layer-wise LR decay. Positions are the fixed sin-cos table, generated for
the ``num_frames`` / ``image_size`` the model is built with (``emovid train --num-frames / --input-size`` build it
so): the official checkpoints hold no ``pos_embed`` (a plain tensor attribute there), so the fine-tuning script's
interpolation never runs on them and its model, too, gets the table for its own size.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
import torch.nn as nn

from emovid.errors import ModelError
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model
from emovid.video.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

_LICENSE = "CC-BY-NC-4.0"
_SOURCE = "VideoMAE (Tong et al., NeurIPS 2022), https://github.com/MCG-NJU/VideoMAE"
_OFFICIAL_NOTE = "official VideoMAE release (MODEL_ZOO.md, Google Drive)"


def _gdrive(file_id: str) -> str:
    # the usercontent endpoint with confirm=t serves large files without the virus-scan interstitial page
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


# config.json fields that decide the weights' shapes or the maths; they must equal the model's
_ARCH_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "patch_size",
    "tubelet_size",
    "num_channels",
    "hidden_act",
    "qv_bias",
)


class VideoMAE(Backbone):
    """VideoMAE ViT encoder: tubelet embedding, fixed sin-cos positions, pre-norm blocks, mean pool + ``fc_norm``.

    Args:
        hidden_size: token width ``D`` (384 for ViT-S, 768 for ViT-B).
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over ``hidden_size``.
        patch_size: spatial patch side.
        tubelet_size: frames per token.
        num_frames: clip length the position table is built for.
        image_size: input side.
        num_classes: classifier outputs (0: ``forward`` returns the embedding).
        drop_rate: dropout before the classifier.
        layer_norm_eps: LayerNorm epsilon (1e-6 in the official code).
        attn_drop_rate: attention dropout.
        proj_drop_rate: dropout after the attention/MLP projections.
        drop_path_rate: stochastic depth (Huang et al. 2016) of the last block; block ``i`` drops its attention and
            MLP residual branches per sample with probability ``drop_path_rate * i / (depth - 1)``, as VideoMAE's
            ``modeling_finetune.py`` (``--drop_path``, 0.1 in its fine-tuning) does.
    """

    def __init__(
        self,
        hidden_size: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        tubelet_size: int = 2,
        num_frames: int = 16,
        image_size: int = 224,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEModel

        if num_frames % tubelet_size:
            raise ModelError(f"num_frames={num_frames} is not a multiple of tubelet_size={tubelet_size}")
        self.config = VideoMAEConfig(
            image_size=image_size,
            patch_size=patch_size,
            num_channels=3,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
            hidden_size=hidden_size,
            num_hidden_layers=depth,
            num_attention_heads=num_heads,
            intermediate_size=int(hidden_size * mlp_ratio),
            hidden_act="gelu",
            hidden_dropout_prob=proj_drop_rate,
            attention_probs_dropout_prob=attn_drop_rate,
            layer_norm_eps=layer_norm_eps,
            qv_bias=True,
            use_mean_pooling=True,
        )
        self.videomae = VideoMAEModel(self.config)
        self.drop_path_rate = float(drop_path_rate)
        if drop_path_rate > 0:
            add_drop_path(self.videomae, drop_path_rate)
        self.num_features = hidden_size
        self.fc_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.init_head(num_classes, drop_rate)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise LR decay (timm's ``group_matcher``): the tubelet embedding is the stem,
        each transformer layer a block; ``fc_norm`` and the head come last (:mod:`emovid.train.optim`)."""
        return {
            "stem": r"^videomae\.embeddings\.",
            "blocks": [(r"^videomae\.encoder\.layer\.(\d+)\.", None)],
            "head": r"^(fc_norm|head)\.",
        }

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.videomae.encoder.layer)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Final patch tokens ``[B, N, D]`` (``N = T/tubelet * H/patch * W/patch``) for ``x`` ``[B, 3, T, H, W]``."""
        if x.ndim != 5:
            raise ValueError(f"VideoMAE expects [B, C, T, H, W] clips, got shape {tuple(x.shape)}")
        if x.shape[2] != self.config.num_frames:
            # the sin-cos table has one row per token, so the clip length is fixed at build time
            raise ValueError(
                f"VideoMAE built for {self.config.num_frames} frames got {x.shape[2]}; "
                f"create it with num_frames={x.shape[2]} or sample {self.config.num_frames} frames"
            )
        # transformers wants [B, T, C, H, W]
        return self.videomae(pixel_values=x.transpose(1, 2)).last_hidden_state

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final patch tokens ``[B, N, D]`` (unpooled; :meth:`forward_tokens`)."""
        return self.forward_tokens(x)

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """VideoMAE's ``use_mean_pooling``: the token mean through ``fc_norm``, ``[B, D]``."""
        return self.fc_norm(feats.mean(1))

    # ---- loading --------------------------------------------------------------------------------------------

    def load_pretrained_dir(self, path: str | Path) -> dict:
        """Weights of a ``transformers`` VideoMAE folder, after checking its ``config.json`` fits this model.

        Raises:
            ModelError: the folder's architecture differs from this model's.
        """
        from emovid.models.hub import state_dict_from_dir

        path = Path(path)
        cfg_file = path / "config.json"
        if cfg_file.exists():
            try:
                cfg = json.loads(cfg_file.read_text())
            except (OSError, ValueError) as e:
                raise ModelError(f"unreadable config.json ({e})", cfg_file) from e
            if cfg.get("model_type", "videomae") != "videomae":
                raise ModelError(f"model_type is {cfg.get('model_type')!r}, not a VideoMAE folder", cfg_file)
            self._check_hf_config(cfg, cfg_file)
        return state_dict_from_dir(path)

    def _check_hf_config(self, cfg: dict, where: Path) -> None:
        if "qkv_bias" in cfg and "qv_bias" not in cfg:  # older transformers spelled it qkv_bias
            cfg = {**cfg, "qv_bias": cfg["qkv_bias"]}
        ours = self.config
        diffs = []
        for f in _ARCH_FIELDS:
            if f in cfg:
                theirs, mine = cfg[f], getattr(ours, f)
                if isinstance(theirs, list):
                    theirs = tuple(theirs) if len(set(theirs)) > 1 else theirs[0]
                if theirs != mine:
                    diffs.append(f"{f}={theirs!r} (model has {mine!r})")
        if diffs:
            raise ModelError(
                f"this VideoMAE folder does not fit the model being built: {'; '.join(diffs)}; "
                "pick the registered model of that size (videomae_small_patch16_224 / videomae_base_patch16_224)",
                where,
            )
        archs = cfg.get("architectures") or []
        if "VideoMAEForVideoClassification" in archs and cfg.get("use_mean_pooling", True) is False:
            raise ModelError("a classifier without mean pooling (first-token pooling) is not supported", where)
        for f in ("num_frames", "image_size"):
            if f in cfg and cfg[f] != getattr(ours, f):
                # positions are a fixed sin-cos table, so the weights still fit; only the geometry differs
                log.warning("%s: %s=%s but the model is built with %s", where, f, cfg[f], getattr(ours, f))
        eps = cfg.get("layer_norm_eps")
        if eps is not None:
            for m in self.videomae.modules():
                if isinstance(m, nn.LayerNorm):
                    m.eps = float(eps)
        if "VideoMAEForVideoClassification" in archs:
            self.fc_norm.eps = 1e-5  # transformers builds that fc_norm with nn.LayerNorm's default eps


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if p <= 0 or not training:
        return x
    keep = 1 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class _AttnOutput(nn.Module):
    """``VideoMAESelfOutput`` with stochastic depth on the attention branch (same parameters, same keys)."""

    def __init__(self, inner: nn.Module, p: float):
        super().__init__()
        self.dense, self.dropout, self.drop_prob = inner.dense, inner.dropout, p

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return drop_path(self.dropout(self.dense(hidden_states)), self.drop_prob, self.training)


class _MLPOutput(nn.Module):
    """``VideoMAEOutput`` (MLP ``fc2`` + residual) with stochastic depth on the MLP branch."""

    def __init__(self, inner: nn.Module, p: float):
        super().__init__()
        self.dense, self.dropout, self.drop_prob = inner.dense, inner.dropout, p

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return drop_path(self.dropout(self.dense(hidden_states)), self.drop_prob, self.training) + input_tensor


def add_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth in a ``transformers`` ``VideoMAEModel``, which has none: block ``i`` of ``L`` gets
    ``rate * i / (L - 1)`` (``torch.linspace(0, rate, L)``, the official rule) on both residual branches.

    In ``VideoMAELayer`` the attention residual is added after ``attention.output`` and the MLP residual inside
    ``output``, so those two modules are swapped for ones that drop their branch; state-dict keys do not change.
    """
    layers = model.encoder.layer
    rates = torch.linspace(0, rate, len(layers)).tolist()
    for layer, p in zip(layers, rates, strict=True):
        layer.attention.output = _AttnOutput(layer.attention.output, p)
        layer.output = _MLPOutput(layer.output, p)


def _split_official_key(k: str, v: torch.Tensor, out: dict) -> bool:
    """Map one key of the official timm-style layout into ``out``; False if it is not an encoder key."""
    if k.startswith("patch_embed.proj."):
        out["videomae.embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = v
        return True
    m = re.match(r"blocks\.(\d+)\.(.+)$", k)
    if not m:
        return False
    i, rest = m.groups()
    p = f"videomae.encoder.layer.{i}."
    if rest == "attn.qkv.weight":
        q, kk, vv = v.chunk(3, dim=0)
        out[p + "attention.attention.query.weight"] = q
        out[p + "attention.attention.key.weight"] = kk
        out[p + "attention.attention.value.weight"] = vv
        return True
    if rest == "attn.qkv.bias":  # a qkv_bias=False model with a plain biased qkv does not exist upstream
        raise ModelError(f"unexpected fused qkv bias {k!r}; only VideoMAE's q_bias/v_bias layout is supported")
    if rest.startswith("gamma_"):
        raise ModelError(
            f"{k!r}: layer-scale (init_values > 0) checkpoints are not supported by transformers' VideoMAE"
        )
    table = {
        "attn.q_bias": "attention.attention.query.bias",
        "attn.v_bias": "attention.attention.value.bias",
        "norm1.": "layernorm_before.",
        "norm2.": "layernorm_after.",
        "attn.proj.": "attention.output.dense.",
        "mlp.fc1.": "intermediate.dense.",
        "mlp.fc2.": "output.dense.",
    }
    for src, dst in table.items():
        if rest == src or (src.endswith(".") and rest.startswith(src)):
            out[p + dst + rest[len(src) :]] = v
            return True
    raise ModelError(f"unknown key {k!r} in an official VideoMAE checkpoint")


def _hf_key(k: str) -> str:
    k = k.replace("attention.attention.q_bias", "attention.attention.query.bias")
    return k.replace("attention.attention.v_bias", "attention.attention.value.bias")


_DROP_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "pos_embed", "position_embeddings")


def convert_videomae_state_dict(sd: dict) -> tuple[dict, list[str]]:
    """Convert an official or Hugging Face VideoMAE state dict to this module's layout.

    Returns:
        ``(state_dict, dropped)``: the converted tensors (encoder, and ``fc_norm``/``head`` when present) and the
        checkpoint keys deliberately left out (decoder, pre-train final norm).

    Raises:
        ModelError: layouts this encoder cannot represent (layer scale, learnable positions, cls pooling).
    """
    out: dict = {}
    dropped: list[str] = []
    official = any(k.startswith(("blocks.", "encoder.blocks.", "patch_embed.", "encoder.patch_embed.")) for k in sd)
    if official and "norm.weight" in sd and "fc_norm.weight" not in sd:
        # a fine-tuned model built with use_mean_pooling=False pools the first token; not this recipe
        raise ModelError("official fine-tuned checkpoint without fc_norm (first-token pooling) is not supported")
    for k0, v in sd.items():
        k = k0
        if official:
            for pre in ("backbone.", "encoder."):  # the official fine-tune loader strips these too
                if k.startswith(pre):
                    k = k[len(pre) :]
            if k == "pos_embed":
                raise ModelError("checkpoint has learnable position embeddings; VideoMAE here uses the sin-cos table")
            if k0.startswith(_DROP_PREFIXES) or k in ("norm.weight", "norm.bias"):
                dropped.append(k0)
                continue
            if k.startswith(("fc_norm.", "head.")):
                out[k] = v
                continue
            if not _split_official_key(k, v, out):
                raise ModelError(f"unknown key {k0!r} in an official VideoMAE checkpoint")
            continue
        if k.startswith("videomae."):
            k = k[len("videomae.") :]
        if k.startswith(_DROP_PREFIXES) or k.startswith("layernorm."):
            dropped.append(k0)
            continue
        if k.startswith("classifier."):
            out["head." + k[len("classifier.") :]] = v
        elif k.startswith(("fc_norm.", "head.")):
            out[k] = v
        elif k.startswith(("embeddings.", "encoder.")):
            out["videomae." + _hf_key(k)] = v
        else:
            raise ModelError(f"unknown key {k0!r} in a VideoMAE checkpoint")
    return out, dropped


def _filter_videomae(raw: object, model: VideoMAE) -> dict:
    """``filter_fn``: any supported checkpoint object → a state dict that loads strictly into ``model``."""
    from emovid.models.hub import unwrap_state_dict

    sd, dropped = convert_videomae_state_dict(unwrap_state_dict(raw))
    if dropped:
        log.info("VideoMAE: left out %d checkpoint tensors (decoder / pre-train norm): %s", len(dropped), dropped[:4])
    own = model.state_dict()
    if "fc_norm.weight" not in sd:
        # pre-train checkpoint: fc_norm starts fresh, as in the official fine-tuning recipe
        sd["fc_norm.weight"] = own["fc_norm.weight"].clone()
        sd["fc_norm.bias"] = own["fc_norm.bias"].clone()
    ckpt_head = {k: sd.pop(k) for k in [k for k in sd if k.startswith("head.")]}
    if "head.weight" in own:
        if ckpt_head and ckpt_head["head.weight"].shape == own["head.weight"].shape:
            sd.update(ckpt_head)
        else:
            if ckpt_head:
                log.warning(
                    "VideoMAE: checkpoint classifier has %d classes, model has %d; keeping the new head",
                    ckpt_head["head.weight"].shape[0],
                    own["head.weight"].shape[0],
                )
            sd["head.weight"] = own["head.weight"].clone()
            sd["head.bias"] = own["head.bias"].clone()
    return sd


# ---- registered models -----------------------------------------------------------------------------------------


def _cfg(weights: dict[str, WeightSource], default_tag: str | None, **kw) -> PretrainedCfg:
    return PretrainedCfg(
        num_frames=16,
        frame_stride=4,  # the Kinetics-400 fine-tune samples 16 frames every 4th frame (16x4)
        input_size=(224, 224),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=weights,
        default_tag=default_tag,
        license=_LICENSE,
        source=_SOURCE,
        **kw,
    )


_BASE_WEIGHTS = {
    "k400_pretrain": WeightSource(
        hf_hub_id="MCG-NJU/videomae-base",
        license=_LICENSE,
        description="Kinetics-400 self-supervised pre-train, 1600 epochs (HF conversion of the official file)",
    ),
    "k400_pretrain_official": WeightSource(
        url=_gdrive("1tEhLyskjb755TJ65ptsrafUG2llSwQE1"),
        filename="kinetics400-ViTB-1600-16x5x3-pretrain.pth",
        license=_LICENSE,
        description=f"Kinetics-400 ViT-B 1600-epoch pre-train checkpoint, {_OFFICIAL_NOTE}; VideoMAE's own file",
    ),
    "k400_ft": WeightSource(
        hf_hub_id="MCG-NJU/videomae-base-finetuned-kinetics",
        license=_LICENSE,
        description="Kinetics-400 fine-tuned (400 classes, 81.5 top-1), HF conversion",
    ),
    "k400_ft_official": WeightSource(
        url=_gdrive("1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z"),
        filename="kinetics400-ViTB-1600-16x5x3-finetune.pth",
        license=_LICENSE,
        description=f"Kinetics-400 ViT-B 1600-epoch fine-tuned checkpoint (400 classes), {_OFFICIAL_NOTE}",
    ),
}

_SMALL_WEIGHTS = {
    "k400_pretrain_official": WeightSource(
        url=_gdrive("1nU-H1u3eJ-VuyCveU7v-WIOcAVxs5Hww"),
        filename="kinetics400-ViTS-1600-16x5x3-pretrain.pth",
        license=_LICENSE,
        description=f"Kinetics-400 ViT-S 1600-epoch pre-train checkpoint, {_OFFICIAL_NOTE}",
    ),
    "k400_ft": WeightSource(
        hf_hub_id="MCG-NJU/videomae-small-finetuned-kinetics",
        license=_LICENSE,
        description="Kinetics-400 fine-tuned ViT-S (400 classes, 79.0 top-1), HF conversion",
    ),
    "k400_ft_official": WeightSource(
        url=_gdrive("1ygjLRm1kvs9mwGsP3lLxUExhRo6TWnrx"),
        filename="kinetics400-ViTS-1600-16x5x3-finetune.pth",
        license=_LICENSE,
        description=f"Kinetics-400 ViT-S 1600-epoch fine-tuned checkpoint (400 classes), {_OFFICIAL_NOTE}",
    ),
}


@register_model(pretrained_cfg=_cfg(_SMALL_WEIGHTS, "k400_pretrain_official"), filter_fn=_filter_videomae)
def videomae_small_patch16_224(num_classes: int = 0, num_frames: int = 16, image_size: int = 224, **kw) -> VideoMAE:
    """VideoMAE ViT-S/16 (384-d embedding, 12 blocks, 6 heads), 16-frame 224² clips."""
    return VideoMAE(384, 12, 6, num_frames=num_frames, image_size=image_size, num_classes=num_classes, **kw)


@register_model(pretrained_cfg=_cfg(_BASE_WEIGHTS, "k400_pretrain"), filter_fn=_filter_videomae)
def videomae_base_patch16_224(num_classes: int = 0, num_frames: int = 16, image_size: int = 224, **kw) -> VideoMAE:
    """VideoMAE ViT-B/16 (768-d embedding, 12 blocks, 12 heads), 16-frame 224² clips — the Emodiversity backbone."""
    return VideoMAE(768, 12, 12, num_frames=num_frames, image_size=image_size, num_classes=num_classes, **kw)


@register_model(
    pretrained_cfg=PretrainedCfg(
        num_frames=4, frame_stride=2, input_size=(32, 32), license=_LICENSE, source=_SOURCE + " (tiny test variant)"
    ),
    filter_fn=_filter_videomae,
)
def test_videomae(num_classes: int = 0, num_frames: int = 4, image_size: int = 32, **kw) -> VideoMAE:
    """Tiny VideoMAE for tests: 32-d, 2 blocks, 4 heads, 4-frame 32² clips (8 tokens)."""
    return VideoMAE(32, 2, 4, num_frames=num_frames, image_size=image_size, num_classes=num_classes, **kw)
