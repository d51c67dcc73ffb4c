"""CLIP-ViP video encoder (CLIP-ViP recipe): CLIP's ViT with video proxy tokens, on ``transformers``' CLIP modules.

CLIP-ViP (Xue et al., ICLR 2023; microsoft/XPretrain, ``CLIP-ViP/src/modeling/CLIP_ViP.py``) feeds all frames of a
clip through one CLIP ViT:

* tokens are ``[class, proxy_1..proxy_P, frame_1 patches, ..., frame_T patches]`` (``M = 1 + P`` video proxy
  tokens; CLIP-ViP's ``add_cls_num`` is ``P = 3``). The class token and every proxy get CLIP's class position
  embedding; patch tokens get CLIP's patch position embeddings plus a learnable temporal embedding per frame
  (``temporal_size`` = 12 rows, linearly interpolated when a clip has another number of frames);
* attention is *in-frame*: proxy tokens attend to every token, a patch token attends to the ``M`` proxies and to
  the patches of its own frame only. Here that is an additive attention mask handed to ``transformers``'
  ``CLIPEncoderLayer`` (:func:`frame_attention_mask`);
* the video embedding is the first token's output after ``post_layernorm`` and ``visual_projection`` (512-d).

The module's state-dict layout is CLIP's (``vision_model.embeddings.*``, ``vision_model.encoder.layers.N.*``,
``vision_model.{pre_layrnorm,post_layernorm}``, ``visual_projection.weight``) plus CLIP-ViP's
``vision_model.embeddings.added_cls`` ``[P, D]`` and ``vision_model.embeddings.temporal_embedding`` ``[1, 12, D]``.

Weights that load:

* CLIP-ViP's released checkpoints (``pretrain_clipvip_base_{32,16}.pt``: a ``VidCLIP.state_dict()`` with keys
  ``clipmodel.vision_model.*``, ``clipmodel.visual_projection.weight``, plus the text tower, which the video
  encoder leaves out — :func:`split_clip_state_dict` returns it for a text encoder);
* Hugging Face CLIP folders (``CLIPModel``, ``CLIPVisionModelWithProjection``, ``CLIPVisionModel``, from any
  ``transformers`` version), e.g. ``openai/clip-vit-base-patch32``, as the initialisation CLIP-ViP starts from.
  The temporal embedding starts at zero (as in CLIP-ViP) and the proxies start as copies of the class embedding
  plus N(0, 0.02²) noise (CLIP-ViP draws them from N(0, 1); starting next to the class token keeps the
  un-post-trained encoder close to CLIP). A ``CLIPVisionModel`` folder has no projection: the model keeps its
  own, with a warning.

With no proxies (``num_proxies=0``) and one frame the encoder is exactly CLIP's image encoder (tested).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from emovid.errors import ModelError
from emovid.models.base import Backbone
from emovid.models.registry import PretrainedCfg, WeightSource, register_model
from emovid.video.transforms import CLIP_MEAN, CLIP_STD

log = logging.getLogger(__name__)

_SOURCE = "CLIP-ViP (Xue et al., ICLR 2023), https://github.com/microsoft/XPretrain/tree/main/CLIP-ViP"
_MSR_LICENSE = "Microsoft Research License Agreement (XPretrain; non-commercial use)"
_BLOB = "https://hdvila.blob.core.windows.net/dataset"
_SAS = {  # read-only links from CLIP-ViP's README (valid until 2029-12-31)
    32: "sp=r&st=2026-03-27T05:28:07Z&se=2029-12-31T13:43:07Z&spr=https&sv=2024-11-04&sr=b"
    "&sig=IEj2Cl%2Bp3OXbhX%2BE0%2FKcTn8RVHVY7wsXqBCK1axbaFs%3D",
    16: "sp=r&st=2026-03-27T05:27:39Z&se=2029-12-31T13:42:39Z&spr=https&sv=2024-11-04&sr=b"
    "&sig=TZ3DRqahpoDz6Le5r0ryyU1stQBkw2nLLVuctCdtKnw%3D",
}

# CLIPVisionConfig fields that fix the weights' shapes or the maths; a folder must agree on all of them
_ARCH_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "patch_size",
    "image_size",
    "num_channels",
    "hidden_act",
)
_TEXT_PREFIXES = ("text_model.", "text_projection.", "logit_scale")


def frame_attention_mask(num_proxies: int, num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """Which token may attend to which in CLIP-ViP's in-frame attention, as a bool ``[S, S]`` (True = may attend).

    ``S = M + T * L`` with ``M = num_proxies`` (class token included), ``T = num_frames``, ``L =
    tokens_per_frame``. Rows are queries: the first ``M`` rows are all True; the row of a patch of frame ``t`` is
    True on the ``M`` proxy columns and on the columns of frame ``t``.
    """
    m, t, n = num_proxies, num_frames, tokens_per_frame
    frame = torch.cat([torch.full((m,), -1), torch.arange(t).repeat_interleave(n)])
    allowed = frame[:, None] == frame[None, :]
    allowed[:m, :] = True
    allowed[:, :m] = True
    return allowed


def _embeddings_class() -> type:
    """``CLIPViPEmbeddings``, made on first use so that importing this module does not import transformers."""
    global _EMBEDDINGS_CLS
    if _EMBEDDINGS_CLS is not None:
        return _EMBEDDINGS_CLS
    from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

    class CLIPViPEmbeddings(CLIPVisionEmbeddings):
        """CLIP's vision embeddings plus CLIP-ViP's video proxy tokens and temporal embedding.

        Inherits ``class_embedding``, ``patch_embedding`` and ``position_embedding`` (so the keys are CLIP's) and adds
        ``added_cls`` ``[P, D]`` and ``temporal_embedding`` ``[1, temporal_size, D]``.
        """

        def __init__(self, config, num_proxies: int = 3, temporal_size: int = 12):
            super().__init__(config)
            d = config.hidden_size
            self.num_proxies = num_proxies
            self.added_cls = nn.Parameter(torch.randn(num_proxies, d))
            self.temporal_embedding = nn.Parameter(torch.zeros(1, temporal_size, d))

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
            """Tokens ``[B, M + T*L, D]`` and ``(M, T, L)`` for ``pixel_values`` ``[B, T, C, H, W]``."""
            b, t, c, h, w = pixel_values.shape
            if h != self.image_size or w != self.image_size:
                raise ValueError(f"CLIP-ViP expects {self.image_size}x{self.image_size} frames, got {h}x{w}")
            frames = pixel_values.reshape(b * t, c, h, w).to(self.patch_embedding.weight.dtype)
            patches = self.patch_embedding(frames).flatten(2).transpose(1, 2)  # [B*T, L, D]
            n, d = patches.shape[1], patches.shape[2]
            temporal = self.temporal_embedding
            if t != temporal.shape[1]:
                temporal = F.interpolate(temporal.transpose(1, 2), size=t, mode="linear").transpose(1, 2)
            pos = self.position_embedding.weight
            patches = patches.reshape(b, t, n, d) + temporal.unsqueeze(2) + pos[1:]
            # the class token and every proxy share CLIP's class position embedding
            cls_like = torch.cat([self.class_embedding.unsqueeze(0), self.added_cls], dim=0) + pos[:1]
            tokens = torch.cat([cls_like.unsqueeze(0).expand(b, -1, -1), patches.reshape(b, t * n, d)], dim=1)
            return tokens, (1 + self.num_proxies, t, n)

    _EMBEDDINGS_CLS = CLIPViPEmbeddings
    return CLIPViPEmbeddings


_EMBEDDINGS_CLS: type | None = None


class CLIPViP(Backbone):
    """CLIP-ViP video encoder: ``forward_features(x [B, 3, T, H, W])`` gives the tokens ``[B, M + T*L, D]``,
    ``forward_head(tokens, pre_logits=True)`` the video embedding ``[B, projection_dim]``.

    Args:
        hidden_size: ViT width.
        intermediate_size: MLP width.
        depth: transformer layers.
        num_heads: attention heads.
        patch_size: ViT patch side (32 or 16).
        image_size: frame side.
        projection_dim: embedding size (CLIP's joint space).
        num_proxies: video proxy tokens besides the class token (CLIP-ViP: 3).
        temporal_size: rows of the temporal embedding (CLIP-ViP: 12 frames).
        num_classes: classifier outputs on top of the embedding (0: none).
        drop_rate: dropout before the classifier.
        layer_norm_eps: LayerNorm epsilon (CLIP: 1e-5).
        hidden_act: MLP activation (OpenAI CLIP: ``quick_gelu``).
    """

    def __init__(
        self,
        hidden_size: int = 768,
        intermediate_size: int = 3072,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 32,
        image_size: int = 224,
        projection_dim: int = 512,
        num_proxies: int = 3,
        temporal_size: int = 12,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        layer_norm_eps: float = 1e-5,
        hidden_act: str = "quick_gelu",
    ):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.config = CLIPVisionConfig(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=depth,
            num_attention_heads=num_heads,
            patch_size=patch_size,
            image_size=image_size,
            num_channels=3,
            projection_dim=projection_dim,
            layer_norm_eps=layer_norm_eps,
            hidden_act=hidden_act,
        )
        # transformers' CLIP vision tower (pre/post LayerNorm, encoder layers) with CLIP-ViP's embeddings swapped in
        self.vision_model = CLIPVisionModel(self.config)
        self.vision_model.embeddings = _embeddings_class()(self.config, num_proxies, temporal_size)
        self.vision_model._init_weights(self.vision_model.embeddings)
        self.visual_projection = nn.Linear(hidden_size, projection_dim, bias=False)
        nn.init.normal_(self.visual_projection.weight, std=hidden_size**-0.5)
        self.num_proxies = num_proxies
        self.num_features = projection_dim
        self.init_head(num_classes, drop_rate)

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Final hidden states ``[B, M + T*L, D]`` (before ``post_layernorm``) and ``(M, T, L)``."""
        if x.ndim != 5:
            raise ValueError(f"CLIP-ViP expects [B, C, T, H, W] clips, got shape {tuple(x.shape)}")
        vm = self.vision_model
        h, (m, t, n) = vm.embeddings(x.transpose(1, 2))
        h = vm.pre_layrnorm(h)
        allowed = frame_attention_mask(m, t, n).to(h.device)
        # additive mask in the [batch, 1, query, key] form transformers' CLIP attention adds to its logits
        mask = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device)
        mask = mask.masked_fill(~allowed, torch.finfo(h.dtype).min)[None, None]
        for layer in vm.encoder.layers:
            h = layer(h, mask)
        return h, (m, t, n)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[B, M + T*L, D]`` of every token (unpooled, before ``post_layernorm``)."""
        return self.forward_tokens(x)[0]

    def pool_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The first token through ``post_layernorm`` and ``visual_projection``: the ``[B, projection_dim]`` video
        embedding."""
        return self.visual_projection(self.vision_model.post_layernorm(feats[:, 0]))

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.vision_model.encoder.layers)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem: CLIP-ViP's embeddings (patches, positions, proxies, temporal rows) and ``pre_layrnorm``; blocks: the
        encoder layers; head: ``post_layernorm``, ``visual_projection`` and the classifier."""
        return {
            "stem": r"^vision_model\.(embeddings|pre_layrnorm)\.",
            "blocks": [(r"^vision_model\.encoder\.layers\.(\d+)\.", None)],
            "head": r"^(vision_model\.post_layernorm\.|visual_projection\.|head\.)",
        }

    # ---- loading --------------------------------------------------------------------------------------------

    def load_pretrained_dir(self, path: str | Path) -> dict:
        """Weights of a Hugging Face CLIP folder after checking its ``config.json`` fits this model.

        Raises:
            ModelError: the folder is not CLIP or describes another architecture.
        """
        from emovid.models.hub import state_dict_from_dir

        path = Path(path)
        cfg_file = path / "config.json"
        if cfg_file.exists():
            try:
                cfg = json.loads(cfg_file.read_text())
            except (OSError, ValueError) as e:
                raise ModelError(f"unreadable config.json ({e})", cfg_file) from e
            self._check_hf_config(cfg, cfg_file)
        return state_dict_from_dir(path)

    def _check_hf_config(self, cfg: dict, where: Path) -> None:
        from transformers import CLIPVisionConfig

        kind = cfg.get("model_type")
        if kind == "clip":
            vcfg = cfg.get("vision_config") or {}
        elif kind == "clip_vision_model":
            vcfg = cfg
        else:
            raise ModelError(f"model_type is {kind!r}, not a CLIP folder (clip / clip_vision_model)", where)
        theirs = CLIPVisionConfig(**{k: v for k, v in vcfg.items() if k not in ("model_type", "architectures")})
        diffs = [
            f"{f}={getattr(theirs, f)!r} (model has {getattr(self.config, f)!r})"
            for f in _ARCH_FIELDS
            if getattr(theirs, f) != getattr(self.config, f)
        ]
        if diffs:
            raise ModelError(
                f"this CLIP folder does not fit the model being built: {'; '.join(diffs)}; "
                "pick the registered model with that patch size (clip_vip_base_patch32 / clip_vip_base_patch16)",
                where,
            )
        for m in self.vision_model.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = float(theirs.layer_norm_eps)


def split_clip_state_dict(sd: dict) -> tuple[dict, dict]:
    """Split a CLIP or CLIP-ViP state dict into ``(vision, text)`` halves in ``transformers``' ``CLIPModel`` names.

    Accepts CLIP-ViP's ``VidCLIP`` dumps (``clipmodel.`` prefix), ``CLIPModel`` / ``CLIPVisionModelWithProjection``
    (``vision_model.*``), ``transformers`` 5 ``CLIPVisionModel`` (bare ``embeddings.*``, ``encoder.*``, ...).
    ``position_ids`` buffers are dropped. The text half (``text_model.*``, ``text_projection.weight``,
    ``logit_scale``) is what a later CLIP text encoder loads.
    """
    vision, text = {}, {}
    for k, v in sd.items():
        if k.startswith("clipmodel."):
            k = k[len("clipmodel.") :]
        if k.endswith("position_ids"):
            continue
        if k.startswith(_TEXT_PREFIXES):
            text[k] = v
        elif k.startswith(("vision_model.", "visual_projection.")):
            vision[k] = v
        elif k.startswith(("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")):
            vision["vision_model." + k] = v
        elif k.startswith("head."):
            vision[k] = v
        else:
            raise ModelError(f"unknown key {k!r} in a CLIP / CLIP-ViP checkpoint")
    return vision, text


def _filter_clip_vip(raw: object, model: CLIPViP) -> dict:
    """``filter_fn``: CLIP-ViP / CLIP checkpoints → a state dict that loads strictly into ``model``."""
    from emovid.models.hub import unwrap_state_dict

    sd, text = split_clip_state_dict(unwrap_state_dict(raw))
    if text:
        log.info("CLIP-ViP: left out %d text-tower tensors", len(text))
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}  # released files may be fp16
    own = model.state_dict()
    pre = "vision_model.embeddings."
    if pre + "added_cls" not in sd and pre + "class_embedding" in sd:
        # plain CLIP: start the proxies next to the class token and the temporal rows at zero
        cls = sd[pre + "class_embedding"]
        noise = torch.randn(model.num_proxies, cls.shape[0]) * 0.02
        sd[pre + "added_cls"] = cls.unsqueeze(0).expand(model.num_proxies, -1) + noise
        sd[pre + "temporal_embedding"] = torch.zeros_like(own[pre + "temporal_embedding"])
        log.info("CLIP-ViP: initialised %d proxy tokens from CLIP's class embedding", model.num_proxies)
    if "visual_projection.weight" not in sd and "vision_model.post_layernorm.weight" in sd:
        log.warning("CLIP-ViP: checkpoint has no visual_projection (a CLIPVisionModel); keeping a random one")
        sd["visual_projection.weight"] = own["visual_projection.weight"].clone()
    if "head.weight" in own and "head.weight" not in sd:
        sd["head.weight"] = own["head.weight"].clone()
        sd["head.bias"] = own["head.bias"].clone()
    return sd


def load_clip_text_model(source: str | Path, text_config: dict | None = None):
    """A ``transformers.CLIPTextModelWithProjection`` with the text tower of a CLIP folder or a CLIP-ViP checkpoint.

    Args:
        source: a Hugging Face CLIP folder (``config.json`` + weights) or a CLIP-ViP ``.pt`` file (whose text tower
            is OpenAI CLIP-B's: ``CLIPTextConfig`` defaults, 512-d projection).
        text_config: ``CLIPTextConfig`` fields (and ``projection_dim``) overriding those of the folder / defaults.

    Raises:
        ModelError: no text tower in the source, or it does not fit the configuration.
    """
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from emovid.models.hub import load_state_dict, load_state_dict_file, state_dict_from_dir, unwrap_state_dict

    source = Path(source)
    if source.is_dir():
        cfg = json.loads((source / "config.json").read_text()) if (source / "config.json").exists() else {}
        tcfg = dict(cfg.get("text_config") or {})
        # CLIPModel keeps the joint size at the top level; its text_config may carry a stale default
        tcfg["projection_dim"] = cfg.get("projection_dim", tcfg.get("projection_dim", 512))
        raw = state_dict_from_dir(source)
    else:
        tcfg = {"projection_dim": 512}
        raw = load_state_dict_file(source)
    tcfg.update(text_config or {})
    _, text = split_clip_state_dict(unwrap_state_dict(raw))
    text.pop("logit_scale", None)
    if not text:
        raise ModelError("no CLIP text tower (text_model.*) in the checkpoint", source)
    model = CLIPTextModelWithProjection(CLIPTextConfig(**{k: v for k, v in tcfg.items() if k != "model_type"}))
    load_state_dict(model, {k: v.float() for k, v in text.items()}, strict=True, source=str(source))
    return model.eval()


# ---- registered models -----------------------------------------------------------------------------------------


def _cfg(patch: int) -> PretrainedCfg:
    return PretrainedCfg(
        num_frames=12,  # CLIP-ViP samples 12 frames spread uniformly over the whole clip
        frame_stride=1,
        input_size=(224, 224),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        weights={
            "hdvila_pretrain": WeightSource(
                url=f"{_BLOB}/pretrain_clipvip_base_{patch}.pt?{_SAS[patch]}",
                filename=f"pretrain_clipvip_base_{patch}.pt",
                license=_MSR_LICENSE,
                description=f"CLIP-ViP-B/{patch} post-pretrained on HD-VILA-100M with auxiliary captions (ICLR 2023)",
            ),
            "openai_clip": WeightSource(
                hf_hub_id=f"openai/clip-vit-base-patch{patch}",
                license="MIT",
                description=f"OpenAI CLIP ViT-B/{patch} image-text weights (CLIP-ViP's initialisation)",
            ),
        },
        default_tag="hdvila_pretrain",
        license=f"{_MSR_LICENSE} for CLIP-ViP weights; MIT for OpenAI CLIP weights",
        source=_SOURCE,
    )


@register_model(pretrained_cfg=_cfg(32), filter_fn=_filter_clip_vip)
def clip_vip_base_patch32(num_classes: int = 0, **kw) -> CLIPViP:
    """CLIP-ViP ViT-B/32: 12 frames of 224², 3 video proxy tokens, 512-d video embedding."""
    return CLIPViP(patch_size=32, num_classes=num_classes, **kw)


@register_model(pretrained_cfg=_cfg(16), filter_fn=_filter_clip_vip)
def clip_vip_base_patch16(num_classes: int = 0, **kw) -> CLIPViP:
    """CLIP-ViP ViT-B/16: 12 frames of 224², 3 video proxy tokens, 512-d video embedding."""
    return CLIPViP(patch_size=16, num_classes=num_classes, **kw)


@register_model(
    pretrained_cfg=PretrainedCfg(
        num_frames=3, input_size=(32, 32), mean=CLIP_MEAN, std=CLIP_STD, source=_SOURCE + " (tiny test variant)"
    ),
    filter_fn=_filter_clip_vip,
)
def test_clip_vip(num_classes: int = 0, **kw) -> CLIPViP:
    """Tiny CLIP-ViP for tests: 32-d, 2 layers, 4 heads, 32² frames in 4 patches, 2 proxies, 3 temporal rows."""
    args = dict(hidden_size=32, intermediate_size=64, depth=2, num_heads=4, patch_size=16, image_size=32)
    args.update(projection_dim=24, num_proxies=2, temporal_size=3)
    args.update(kw)
    return CLIPViP(num_classes=num_classes, **args)
