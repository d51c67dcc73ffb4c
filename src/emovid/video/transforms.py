"""Clip transforms on ``[C, T, H, W]`` tensors (the layout every emovid backbone takes).

Plain callables composed with :class:`Compose`. Random ones take an optional ``torch.Generator`` so dataset
workers stay reproducible. ``create_transform(model)`` in :mod:`emovid.models` builds these from a model's
``pretrained_cfg``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 [T, H, W, C]`` frames (as decoded) to ``float32 [C, T, H, W]`` in ``[0, 1]``."""
    t = torch.as_tensor(frames)
    if t.ndim != 4:
        raise ValueError(f"expected frames [T, H, W, C], got shape {tuple(t.shape)}")
    t = t.permute(3, 0, 1, 2)
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a clip [C, T, H, W], got shape {tuple(x.shape)}")


class Compose:
    """Apply transforms in order; ``generator`` (if given) drives every random one, for per-sample seeding."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator=generator) if getattr(t, "random", False) else t(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class ResizeShortSide:
    """Resize so the shorter side equals ``size``, keeping the aspect ratio (bilinear, antialiased)."""

    def __init__(self, size: int, antialias: bool = True):
        self.size = size
        self.antialias = antialias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check(x)
        h, w = x.shape[-2:]
        if min(h, w) == self.size:
            return x
        if h <= w:
            nh, nw = self.size, max(1, round(w * self.size / h))
        else:
            nh, nw = max(1, round(h * self.size / w)), self.size
        return resize(x, (nh, nw), self.antialias)

    def __repr__(self) -> str:
        return f"ResizeShortSide({self.size})"


class Resize:
    """Resize to exactly ``(height, width)``."""

    def __init__(self, size: int | tuple[int, int], antialias: bool = True):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.antialias = antialias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check(x)
        return resize(x, self.size, self.antialias)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


def resize(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Resize a ``[C, T, H, W]`` clip to ``size = (H, W)``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    dtype = x.dtype
    y = x.permute(1, 0, 2, 3).float()  # frames as the batch
    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    y = y.permute(1, 0, 2, 3)
    return y.round().clamp(0, 255).to(dtype) if dtype == torch.uint8 else y.to(dtype)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class CenterCrop:
    """Crop the central ``size`` (int or ``(H, W)``); pads with zeros when the clip is smaller."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = _pair(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check(x)
        x = _pad_to(x, self.size)
        h, w = x.shape[-2:]
        th, tw = self.size
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class RandomCrop:
    """Crop a ``size`` window at a uniformly random position (the same for every frame of the clip)."""

    random = True

    def __init__(self, size: int | tuple[int, int], generator: torch.Generator | None = None):
        self.size = _pair(size)
        self.generator = generator

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(x)
        g = generator or self.generator
        x = _pad_to(x, self.size)
        h, w = x.shape[-2:]
        th, tw = self.size
        top = int(torch.randint(0, h - th + 1, (1,), generator=g))
        left = int(torch.randint(0, w - tw + 1, (1,), generator=g))
        return x[..., top : top + th, left : left + tw]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


def _pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
    return x


class RandomHorizontalFlip:
    """Mirror the whole clip left-right with probability ``p``."""

    random = True

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(x)
        if float(torch.rand(1, generator=generator or self.generator)) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """``(x - mean) / std`` per channel for a float clip in ``[0, 1]``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check(x)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def clip_transform(
    size: int | tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    short_side: int | None = None,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> Compose:
    """The standard video-model preprocessing: resize short side, crop (random when training), flip, normalize.

    Args:
        size: crop size.
        short_side: resize target for the short side; defaults to the crop size (eval) or 8/7 of it (train).
    """
    crop = _pair(size)
    if short_side is None:
        short_side = min(crop) if not train else int(round(min(crop) * 8 / 7))
    steps: list[Callable] = [ResizeShortSide(short_side)]
    if train:
        steps += [RandomCrop(crop, generator), RandomHorizontalFlip(0.5, generator)]
    else:
        steps.append(CenterCrop(crop))
    steps.append(Normalize(mean, std))
    return Compose(steps)
