"""Model registry (timm's pattern): ``@register_model`` functions, :func:`create_model`, :func:`list_models`.

A registered function builds a model with random weights; :func:`create_model` then loads ``pretrained``
weights through :mod:`emovid.models.hub`. Weights are never loaded at import time.

Every model it returns follows the contract of :class:`emovid.models.base.Backbone` (timm's):

* ``forward_features(x)`` -> the unpooled features (tokens or map; ``x`` is ``[B, C, T, H, W]`` for video models,
  ``[B, C, H, W]`` for face/image models); ``forward_head(feats, pre_logits=True)`` -> the embedding
  ``[B, D]`` (:func:`emovid.models.base.pooled` does both); ``forward(x)`` -> the classifier's output when
  ``num_classes > 0``, else the embedding;
* ``forward_intermediates``, ``get_classifier`` / ``reset_classifier``, ``group_matcher``;
* ``num_features`` (``D``) and ``pretrained_cfg`` (:class:`PretrainedCfg`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from emovid.errors import ModelError
from emovid.video.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class WeightSource:
    """Where one set of published weights lives and how to read it.

    Attributes:
        url: direct download URL (``hf_hub_id`` may be used instead).
        hf_hub_id: Hugging Face repo id; with ``hf_filename`` a single file, without it a model directory.
        hf_filename: file inside ``hf_hub_id``.
        sha256: expected checksum of a downloaded file (verified when given).
        filename: name of the file in the cache, and the name the offline message asks the user to place.
        license: licence of the weights.
        description: what they are (dataset, epochs, paper table row...).
    """

    url: str | None = None
    hf_hub_id: str | None = None
    hf_filename: str | None = None
    sha256: str | None = None
    filename: str | None = None
    license: str = "unknown"
    description: str = ""


@dataclass(frozen=True)
class PretrainedCfg:
    """What a model's weights expect from their input, and where the weights come from.

    Attributes:
        num_frames: frames per clip (1 for image/face models).
        frame_stride: step between sampled frames at the source frame rate.
        input_size: ``(H, W)`` of the model input.
        short_side: resize target for the short side before cropping; ``None`` = ``min(input_size)``.
        mean: per-channel normalisation mean (inputs in ``[0, 1]``).
        std: per-channel normalisation std.
        in_chans: input channels (1 for greyscale face models).
        face_crop: True if the model expects face crops, False for full frames.
        crop_margin: face models: context added on each side of a detected face box, ``(fraction of the box's
            longer side, pixels)`` (:func:`emovid.faces.crops.square_box`).
        crop_framing: face models: ``"haar"`` when the weights were trained on Haar cascade boxes (boxes from other
            detectors are then framed as a Haar box would frame the face, :func:`emovid.faces.crops.haar_framed`);
            empty otherwise.
        num_classes: classes of the pretrained head (0 for none).
        label_names: names of those classes.
        weights: published weights by tag.
        default_tag: the tag used for ``pretrained=True``.
        license: licence of the architecture's code/weights as shipped here.
        source: paper / reference implementation.
        task: what the pretrained head does, for filtering the zoo (``"expression"``: face-expression classifiers,
            the ``--model`` choices of ``emovid analyze``); empty for backbones.
        training_data: what the published weights were trained on, with its terms where they restrict use.
        model_card: the model card's path in the repository (``docs/models/*.md``).
    """

    num_frames: int = 16
    frame_stride: int = 1
    input_size: tuple[int, int] = (224, 224)
    short_side: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    in_chans: int = 3
    face_crop: bool = False
    crop_margin: tuple[float, int] = (0.1, 0)
    crop_framing: str = ""
    num_classes: int = 0
    label_names: tuple[str, ...] | None = None
    weights: dict[str, WeightSource] = field(default_factory=dict)
    default_tag: str | None = None
    license: str = ""
    source: str = ""
    task: str = ""
    training_data: str = ""
    model_card: str = ""

    def replace(self, **changes: Any) -> PretrainedCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["weights"] = {k: {kk: vv for kk, vv in dataclasses.asdict(v).items() if vv} for k, v in self.weights.items()}
        return d


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    cfg: PretrainedCfg
    family: str
    filter_fn: Callable[[dict, nn.Module], dict] | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    pretrained_cfg: PretrainedCfg | None = None,
    family: str | None = None,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
    name: str | None = None,
):
    """Register a model constructor under its function name.

    Usable bare (``@register_model``) or with arguments (``@register_model(pretrained_cfg=..., filter_fn=...)``).

    Args:
        pretrained_cfg: default input geometry and weight sources.
        family: model family shown by ``list_models`` (default: the defining module's last name part).
        filter_fn: ``(state_dict, model) -> state_dict`` converting official checkpoint layouts to the model's.
        name: registry name (default: the function's name).
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key].fn.__module__ != f.__module__:
            raise ValueError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(
            name=key,
            fn=f,
            cfg=pretrained_cfg or PretrainedCfg(),
            family=family or f.__module__.rsplit(".", 1)[-1],
            filter_fn=filter_fn,
        )
        return f

    return deco(fn) if fn is not None else deco


def _ensure_builtin_models() -> None:
    from emovid.models import _import_families

    _import_families()


def list_models(pattern: str = "*", include_test: bool = True) -> list[str]:
    """Registered model names matching a glob ``pattern``; ``include_test=False`` hides the tiny ``test_*`` ones."""
    _ensure_builtin_models()
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    return names if include_test else [n for n in names if not n.startswith("test_")]


def get_model_entry(name: str) -> ModelEntry:
    _ensure_builtin_models()
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"unknown model {name!r}{hint}; `emovid list-models` shows the choices")
    return _REGISTRY[name]


#: ``--pretrained`` values that ask for random initialisation.
RANDOM_INIT = ("none", "random")


def default_weights(name: str, pretrained: str | bool | None) -> str | None:
    """The weights a run of model ``name`` starts from, as ``emovid train`` and ``emovid extract --model`` read
    ``--pretrained``: unset (``None``) or ``True`` means the model's default tag (``None`` when it has none, e.g.
    the ``test_*`` models); ``none``/``random``/``False`` means random initialisation (``None``); anything else
    (a tag, file, folder, hub id, URL) is returned as it is.

    Raises:
        ModelError: unknown model name.
    """
    if pretrained is None or pretrained is True:
        return get_model_entry(name).cfg.default_tag
    if pretrained is False or str(pretrained).strip().lower() in RANDOM_INIT:
        return None
    return str(pretrained)


def create_model(
    name: str,
    pretrained: str | bool | None = None,
    num_classes: int | None = None,
    strict: bool = True,
    allow_size_mismatch: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        name: a name from :func:`list_models`.
        pretrained: ``None``/``False`` for random init; ``True`` for the default tag; a tag from
            ``pretrained_cfg.weights``; a local checkpoint file; ``local-dir:PATH`` (a Hugging Face model
            folder or an emovid checkpoint folder); ``hf-hub:ORG/NAME[/FILE]``; or an ``https://`` URL
            (``#sha256=...`` appended to check it).
        num_classes: classifier outputs; 0 gives a feature extractor whose ``forward`` returns the embedding.
            ``None`` keeps the pretrained head.
        strict: fail on missing or unexpected checkpoint keys.
        allow_size_mismatch: skip tensors whose shape differs (reported) instead of failing.
        **overrides: passed to the model function (e.g. ``num_frames``, ``drop_rate``).

    Raises:
        ModelError: unknown name, or a checkpoint that does not fit.
        WeightsUnavailableError: weights must be downloaded but the machine is offline.
    """
    entry = get_model_entry(name)
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = entry.fn(**kwargs)
    except TypeError as e:
        raise ModelError(f"model {name!r}: bad option ({e})") from e
    cfg = getattr(model, "pretrained_cfg", None) or entry.cfg
    model.pretrained_cfg = cfg
    model.model_name = name
    if pretrained:
        from emovid.models.hub import load_pretrained

        model.load_report = load_pretrained(
            model,
            pretrained,
            cfg=cfg,
            filter_fn=entry.filter_fn,
            strict=strict,
            allow_size_mismatch=allow_size_mismatch,
        )
    return model


def model_info(name: str) -> dict:
    """Parameter count, family, clip geometry and weight sources of a registered model (builds it, no weights)."""
    entry = get_model_entry(name)
    model = create_model(name)
    cfg = model.pretrained_cfg
    return {
        "name": name,
        "family": entry.family,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "num_features": getattr(model, "num_features", None),
        "num_frames": cfg.num_frames,
        "frame_stride": cfg.frame_stride,
        "input_size": list(cfg.input_size),
        "face_crop": cfg.face_crop,
        "weights": sorted(cfg.weights),
        "default_tag": cfg.default_tag,
        "license": cfg.license,
        "source": cfg.source,
    }


def create_transform(model_or_cfg: nn.Module | PretrainedCfg, train: bool = False, generator=None):
    """Preprocessing for a model, derived from its ``pretrained_cfg`` (resize, crop, flip when training, normalise)."""
    from emovid.video.transforms import clip_transform

    cfg = model_or_cfg if isinstance(model_or_cfg, PretrainedCfg) else model_or_cfg.pretrained_cfg
    return clip_transform(
        cfg.input_size, mean=cfg.mean, std=cfg.std, short_side=cfg.short_side, train=train, generator=generator
    )
