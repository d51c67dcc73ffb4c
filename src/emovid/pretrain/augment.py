"""The clip augmentations of the pretext views: one spatial crop window per clip, flip, colour jitter, blur."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as the models' own RGB -> grey conversion


@dataclass(frozen=True)
class ViewSpec:
    """One view of a video: its temporal crop, spatial size and the probability of blurring it."""

    num_frames: int
    frame_stride: int
    size: int
    scale: tuple[float, float]
    blur_p: float


def random_resized_crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a window covering ``scale`` of the area with aspect ``ratio`` (w/h).

    The usual Inception-style sampling (ten tries, then the largest central window of an allowed aspect).
    """
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every frame of a ``[C, T, H, W]`` clip with the same isotropic Gaussian (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c, n, h, w = x.shape
    y = x.permute(1, 0, 2, 3)  # frames as the batch, channels grouped
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return y.permute(1, 0, 2, 3).contiguous()


class ClipAugment:
    """The spatial/photometric augmentation of one view of a ``[3, T, H, W]`` RGB clip in ``[0, 1]``.

    Random resized crop (one window for all frames) → resize to ``size`` → horizontal flip → colour jitter with
    probability ``jitter_p`` (brightness ``x·b``, contrast ``(x − mean)·c + mean`` with the clip's grey mean;
    RGB: saturation, then random greyscale) → Gaussian blur with probability ``blur_p`` (σ ∈ [0.1, 2.0]
    scaled from the papers' 224-pixel crops to ``size``) → normalisation. A model with ``in_chans=1`` gets the
    clip converted to luminance before the jitter, so only brightness and contrast apply.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float],
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int = 3,
        flip_p: float = 0.5,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)
        self.in_chans = in_chans
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
        self.flip_p, self.jitter_p = flip_p, jitter_p
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.grayscale_p, self.blur_p = grayscale_p, blur_p

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        from emovid.video.transforms import resize

        _, _, h, w = clip.shape
        top, left, ch, cw = random_resized_crop_box(h, w, self.scale, self.ratio, rng)
        x = resize(clip[..., top : top + ch, left : left + cw], (self.size, self.size))
        if rng.random() < self.flip_p:
            x = x.flip(-1)
        if self.in_chans == 1:
            x = _luma(x)
        if rng.random() < self.jitter_p:
            x = self._jitter(x, rng)
        if self.in_chans != 1 and rng.random() < self.grayscale_p:
            x = _luma(x).expand(3, -1, -1, -1)
        if self.blur_p > 0 and rng.random() < self.blur_p:
            x = gaussian_blur(x, float(rng.uniform(0.1, 2.0)) * self.size / 224)
        return ((x - self.mean) / self.std).contiguous()

    def _jitter(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.brightness:
            x = (x * rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)).clamp(0, 1)
        if self.contrast:
            m = (_luma(x) if x.shape[0] == 3 else x).mean()
            x = ((x - m) * rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast) + m).clamp(0, 1)
        if self.saturation and x.shape[0] == 3:
            g = _luma(x)
            x = ((x - g) * rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation) + g).clamp(0, 1)
        return x


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = x.new_tensor(_LUMA).view(3, 1, 1, 1)
    return (x * w).sum(0, keepdim=True)
