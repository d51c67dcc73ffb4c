"""The hidden labels of a synthetic video (:class:`Latent`) and their course over its frames (:func:`trajectories`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emovid.data.readers.mosei import FER_CLASSES

CLASS_VALENCE = dict(angry=-0.6, disgust=-0.6, fear=-0.6, happy=0.9, sad=-0.8, surprise=0.3, neutral=0.0)
CLASS_AROUSAL = dict(angry=0.7, disgust=0.2, fear=0.7, happy=0.4, sad=-0.5, surprise=0.8, neutral=-0.3)

_SKIN_LIGHT = np.array([235.0, 190.0, 160.0])
_SKIN_DARK = np.array([170.0, 115.0, 80.0])


@dataclass(frozen=True)
class Latent:
    """The hidden labels and nuisance factors of one synthetic video."""

    index: int
    video_id: str
    emotion: int
    intensity: float
    valence: float
    arousal: float
    scale: float
    dx: float
    dy: float
    skin: tuple[float, float, float]
    bg_top: tuple[int, int, int]
    bg_bottom: tuple[int, int, int]
    motion: str
    phase: float
    va_phase: tuple[float, float]
    va_period: tuple[float, float]
    ex_phase: float

    @property
    def emotion_name(self) -> str:
        return FER_CLASSES[self.emotion]


def sample_latent(seed: int, index: int) -> Latent:
    """The latents of video ``index`` for ``seed`` (independent of the number of videos)."""
    rng = np.random.default_rng([int(seed), int(index)])
    c = int(rng.integers(7))
    name = FER_CLASSES[c]
    inten = float(rng.uniform(0.0, 0.3) if name == "neutral" else rng.uniform(0.2, 1.0))
    g = 0.35 + 0.65 * inten
    v = float(np.clip(CLASS_VALENCE[name] * g + rng.uniform(-0.35, 0.35), -0.95, 0.95))
    a = float(np.clip(CLASS_AROUSAL[name] * g + rng.uniform(-0.45, 0.45), -0.95, 0.95))
    t = float(rng.uniform())
    skin = tuple(float(x) for x in _SKIN_LIGHT * (1 - t) + _SKIN_DARK * t)
    return Latent(
        index=index,
        video_id=f"{index:05d}",
        emotion=c,
        intensity=inten,
        valence=v,
        arousal=a,
        scale=float(rng.uniform(0.9, 1.1)),
        dx=float(rng.uniform(-0.08, 0.08)),
        dy=float(rng.uniform(-0.05, 0.05)),
        skin=skin,  # type: ignore[arg-type]
        bg_top=tuple(int(x) for x in rng.integers(30, 170, 3)),  # type: ignore[arg-type]
        bg_bottom=tuple(int(x) for x in rng.integers(30, 170, 3)),  # type: ignore[arg-type]
        motion=str(rng.choice(["bob", "shake", "diagonal"])),
        phase=float(rng.uniform(0, 2 * math.pi)),
        va_phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        va_period=(float(rng.uniform(2.0, 4.0)), float(rng.uniform(2.0, 4.0))),
        ex_phase=float(rng.uniform(0, 2 * math.pi)),
    )


def trajectories(lat: Latent, num_frames: int, fps: float) -> dict[str, np.ndarray]:
    """Per-frame valence, arousal, exaggeration and head offset (pixels per unit frame size) of a video."""
    t = np.arange(num_frames) / fps
    val = np.clip(lat.valence + 0.15 * np.sin(2 * np.pi * t / lat.va_period[0] + lat.va_phase[0]), -1, 1)
    aro = np.clip(lat.arousal + 0.15 * np.sin(2 * np.pi * t / lat.va_period[1] + lat.va_phase[1]), -1, 1)
    a01 = (aro + 1) / 2
    freq = 0.4 + 2.2 * a01
    phase = lat.phase + np.cumsum(2 * np.pi * freq / fps)
    amp = 0.015 + 0.085 * a01
    disp = amp * np.sin(phase)
    ox = {"bob": 0.0, "shake": 1.0, "diagonal": 0.7}[lat.motion]
    oy = {"bob": 1.0, "shake": 0.0, "diagonal": 0.7}[lat.motion]
    ex = lat.intensity * (0.85 + 0.15 * np.sin(2 * np.pi * 0.6 * t + lat.ex_phase))
    return {
        "time": t,
        "valence": val.astype(np.float64),
        "arousal": aro.astype(np.float64),
        "exaggeration": ex,
        "offset_x": disp * ox,
        "offset_y": disp * oy,
        "blush": 0.75 * a01,
        "brow_bounce": 0.08 * ex * np.sin(2 * np.pi * t),
    }
