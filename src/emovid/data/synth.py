"""Labelled synthetic videos of drawn faces, with labels in every supported format.

Each video shows one cartoon face (skin-coloured ellipse head, hair, shaded eye sockets, eyes, brows, nose,
mouth, cheeks) whose appearance is a known function of per-video latent labels:

========================  =================================================================================
label                     what it changes in the picture
========================  =================================================================================
valence ``v(t)``          mouth curvature: the mouth corners rise by ``0.22 u v(t)`` above the centre
                          (``u`` = face half-width), so +1 is a broad smile, -1 a frown
arousal ``a(t)``          head motion: bob/shake amplitude ``(0.015 + 0.085 a01) S`` and frequency
                          ``0.4 + 2.2 a01`` Hz (``a01 = (a + 1) / 2``, ``S`` = frame size), and cheek blush
                          opacity ``0.75 a01``
intensity ``i``           exaggeration ``e(t) = i (0.85 + 0.15 sin(2π 0.6 t + φ))``: mouth openness
                          ``0.05 + 0.95 e``, brow bounce ``0.08 e sin(2π t)``, and how far the category
                          shape is pushed (``0.45 + 0.55 e`` of :data:`PROTOTYPES`)
emotion category          brow inner/outer height and asymmetry, eye openness and asymmetry, mouth width and
                          tilt, per :data:`PROTOTYPES` (7 FER classes, :data:`FER_CLASSES` order)
========================  =================================================================================

Nuisance factors vary mildly and independently: face position (±8 % of the frame) and scale (0.9–1.1), skin
tone, a two-colour background gradient, head-motion direction and phase.

Latents per video (drawn from ``np.random.default_rng([seed, index])``, so the first videos do not depend on
how many are made): category uniform over 7; intensity ``U(0.2, 1)`` (neutral: ``U(0, 0.3)``); mean valence
``clip(CLASS_VALENCE[c] (0.35 + 0.65 i) + U(-0.35, 0.35))``; mean arousal likewise with
:data:`CLASS_AROUSAL` and ``U(-0.45, 0.45)``; per-frame valence/arousal add a slow sinusoid (±0.15).

Labels derived from the latents (all written by :func:`generate`):

* intensity CSV: ``intensity_score = i``.
* VCE: ``emotion_k = clip(w_c i P[c][k] + 0.3 max(a,0) HIGH_AROUSAL[k] + 0.3 max(-a,0) LOW_AROUSAL[k]
  + 0.2 max(v,0) POSITIVE[k] + 0.2 max(-v,0) NEGATIVE[k], 0, 1)`` rounded to 1/120 (VCE's rating grid), with
  ``w_c = 1`` except ``w_neutral = (1 - i) / i`` (neutral prototypes fade with intensity); :data:`VCE_PROTOTYPES`.
* V2V: preference by mean rendered valence; pairwise train/test comparisons skip near ties (< 0.1).
* MOSEI: the category's emotion gets ``p / 3`` with ``p = clip(ceil(9 i), 1, 9)`` (thirds, 1/3–3), its
  :data:`MOSEI_SECONDARY` partner ``floor(0.4 p) / 3``; neutral videos are all zero.
* FIV2: OCEAN traits ``clip(0.5 + 0.5 W · [v, a, 2i - 1], 0, 1)`` with :data:`TRAIT_WEIGHTS`.
* SEWA-style VA: the per-frame ``v(t)``, ``a(t)`` actually rendered.
* captions: templates naming the emotion (adverb by intensity) with Plutchik counts from :data:`PLUTCHIK_MAP`.

Layout of ``OUT_DIR`` (also described in ``synth_manifest.json``)::

    videos/00000.mp4 ...                       H.264 yuv420p, S×S, ``fps``, ``seconds`` long
    intensity.csv                              video_path,intensity_score     (video root: OUT_DIR)
    vce/{metadata,train_labels,test_labels}.json + vce/videos/ (hard links)
    v2v/{metadata,train_labels,test_labels,listwise_labels}.json + v2v/videos/ (hard links)
    mosei.csv                                  video_id,happy,...,fear,split   (video root: videos/)
    fiv2/annotation_{training,validation,test}.pkl + fiv2/{training,validation,test}80_NN/ID.000.mp4
    va.csv                                     video,time,valence,arousal      (video root: videos/)
    captions.json                              seed-002 emotion captions       (video root: videos/)
    msrvtt_captions.csv, msrvtt_captions.json  MSR-VTT-style captions          (video root: videos/)
    synth_manifest.json

Hard links (copies where the file system refuses) keep each dataset folder self-contained at no cost.
Every split is by video: ``test`` 20 %, then ``val`` 20 % of the rest, the remainder ``train``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.readers.mosei import FER_CLASSES, MOSEI_EMOTIONS
from emovid.data.readers.vce import VCE_EMOTIONS
from emovid.data.splits import split_ids
from emovid.utils.io import atomic_open, atomic_path, write_json

SYNTH_VERSION = 1

#: Per-category face-shape deltas at full exaggeration (units of the face half-width ``u``, eye openness factor).
PROTOTYPES: dict[str, dict[str, float]] = {
    "angry": dict(brow_in=-0.22, brow_out=0.08, brow_asym=0.0, eye_open=-0.35, eye_asym=0.0, mouth_w=-0.15, tilt=0.0),
    "disgust": dict(
        brow_in=-0.1, brow_out=-0.05, brow_asym=0.15, eye_open=-0.15, eye_asym=0.5, mouth_w=-0.05, tilt=0.6
    ),
    "fear": dict(brow_in=0.3, brow_out=0.05, brow_asym=0.0, eye_open=0.7, eye_asym=0.0, mouth_w=0.35, tilt=0.0),
    "happy": dict(brow_in=0.08, brow_out=0.08, brow_asym=0.0, eye_open=-0.35, eye_asym=0.0, mouth_w=0.3, tilt=0.0),
    "sad": dict(brow_in=0.28, brow_out=-0.15, brow_asym=0.0, eye_open=-0.3, eye_asym=0.0, mouth_w=-0.15, tilt=0.0),
    "surprise": dict(brow_in=0.35, brow_out=0.35, brow_asym=0.0, eye_open=0.8, eye_asym=0.0, mouth_w=-0.4, tilt=0.0),
    "neutral": dict(brow_in=0.0, brow_out=0.0, brow_asym=0.0, eye_open=0.0, eye_asym=0.0, mouth_w=0.0, tilt=0.0),
}
CLASS_VALENCE = dict(angry=-0.6, disgust=-0.6, fear=-0.6, happy=0.9, sad=-0.8, surprise=0.3, neutral=0.0)
CLASS_AROUSAL = dict(angry=0.7, disgust=0.2, fear=0.7, happy=0.4, sad=-0.5, surprise=0.8, neutral=-0.3)

#: VCE emotion weights per category (scaled by intensity).
VCE_PROTOTYPES: dict[str, dict[str, float]] = {
    "angry": {"Anger": 0.9, "Disgust": 0.3, "Anxiety": 0.2},
    "disgust": {"Disgust": 0.9, "Horror": 0.3, "Anger": 0.2, "Awkwardness": 0.2},
    "fear": {"Fear": 0.9, "Horror": 0.6, "Anxiety": 0.5, "Surprise": 0.2},
    "happy": {"Joy": 0.9, "Amusement": 0.7, "Satisfaction": 0.4, "Adoration": 0.3, "Admiration": 0.2},
    "sad": {"Sadness": 0.9, "Empathic Pain": 0.6, "Nostalgia": 0.3, "Boredom": 0.2},
    "surprise": {"Surprise": 0.9, "Awe (or Wonder)": 0.6, "Interest": 0.4, "Excitement": 0.3, "Confusion": 0.3},
    "neutral": {"Calmness": 0.6, "Boredom": 0.3, "Interest": 0.2, "Entrancement": 0.2},
}
HIGH_AROUSAL = {"Excitement": 0.5, "Anxiety": 0.2}
LOW_AROUSAL = {"Calmness": 0.5, "Boredom": 0.3, "Relief": 0.2}
POSITIVE = {"Satisfaction": 0.3, "Aesthetic Appreciation": 0.3, "Relief": 0.2, "Romance": 0.1}
NEGATIVE = {"Empathic Pain": 0.2, "Confusion": 0.2, "Awkwardness": 0.2}

#: FER class → MOSEI emotion, and the MOSEI emotion that co-occurs with it.
FER_TO_MOSEI = dict(angry="anger", disgust="disgust", fear="fear", happy="happy", sad="sad", surprise="surprise")
MOSEI_SECONDARY = dict(
    anger="disgust", disgust="anger", fear="surprise", happy="surprise", sad="fear", surprise="happy"
)
#: OCEAN weights on (valence, arousal, 2 intensity - 1), :data:`FIV2_TRAITS` order.
TRAIT_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "openness": (0.15, 0.35, 0.3),
    "conscientiousness": (0.25, -0.35, -0.2),
    "extraversion": (0.35, 0.4, 0.1),
    "agreeableness": (0.55, -0.1, 0.0),
    "neuroticism": (-0.45, 0.3, 0.15),
}
#: Plutchik emotions counted in captions per category (primary first).
PLUTCHIK_MAP = dict(
    angry=("anger", "disgust"),
    disgust=("disgust", "anger"),
    fear=("fear", "surprise"),
    happy=("joy", "trust", "anticipation"),
    sad=("sadness",),
    surprise=("surprise", "anticipation"),
    neutral=(),
)
_WORDS = dict(
    angry=("angry", "furious face frowning"),
    disgust=("disgusted", "face wrinkling in disgust"),
    fear=("afraid", "frightened face staring"),
    happy=("happy", "joyful face grinning"),
    sad=("sad", "gloomy face sulking"),
    surprise=("surprised", "astonished face gasping"),
    neutral=("calm", "neutral face resting"),
)

_SHIFT = 4  # sub-pixel drawing: OpenCV takes fixed-point coordinates with this many fractional bits
_ONE = 1 << _SHIFT
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


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _c(rgb) -> tuple[int, int, int]:
    return tuple(int(round(float(c))) for c in rgb)  # type: ignore[return-value]


def background(lat: Latent, size: int) -> np.ndarray:
    """The static vertical-gradient background of a video."""
    w = np.linspace(0.0, 1.0, size)[:, None, None]
    col = np.array(lat.bg_top, float) * (1 - w) + np.array(lat.bg_bottom, float) * w
    return np.broadcast_to(np.round(col), (size, size, 3)).astype(np.uint8).copy()


def render_frame(
    lat: Latent, traj: dict[str, np.ndarray], k: int, size: int, bg: np.ndarray | None = None
) -> np.ndarray:
    """Draw frame ``k`` of a video as RGB ``uint8 [size, size, 3]``."""
    import cv2

    img = background(lat, size) if bg is None else bg.copy()
    proto = PROTOTYPES[lat.emotion_name]
    e = float(traj["exaggeration"][k])
    amt = 0.45 + 0.55 * e if lat.emotion_name != "neutral" else 0.0
    shape = {n: amt * x for n, x in proto.items()}
    u = 0.28 * size * lat.scale
    ry = 1.3 * u
    cx = size / 2 + (lat.dx + float(traj["offset_x"][k])) * size
    cy = size / 2 + 0.03 * size + (lat.dy + float(traj["offset_y"][k])) * size
    skin = np.array(lat.skin)
    aa = cv2.LINE_AA

    cv2.ellipse(img, _p(cx, cy), _p(u, ry), 0, 0, 360, _c(skin), -1, aa, _SHIFT)
    cv2.ellipse(
        img, _p(cx, cy - 0.02 * ry), _p(0.98 * u, 0.98 * ry), 0, 195, 345, _c(skin * 0.35), int(0.3 * u), aa, _SHIFT
    )
    blush = float(traj["blush"][k])
    if blush > 0.01:
        over = img.copy()
        for s in (-1, 1):
            centre = _p(cx + s * 0.55 * u, cy + 0.22 * ry)
            cv2.ellipse(over, centre, _p(0.22 * u, 0.14 * u), 0, 0, 360, (225, 60, 70), -1, aa, _SHIFT)
        cv2.addWeighted(over, blush, img, 1 - blush, 0, img)

    ey = cy - 0.18 * ry
    bounce = float(traj["brow_bounce"][k])
    for s in (-1, 1):  # s = -1: the face's right (image left)
        ex = cx + s * 0.42 * u
        eo = max(0.2, 1.0 + shape["eye_open"]) * (1 + s * shape["eye_asym"] * 0.5)
        eh = max(0.03 * u, 0.13 * u * eo)
        # A shaded socket keeps the eye region darker than the cheeks, as Haar face detectors expect.
        cv2.ellipse(img, _p(ex, ey), _p(0.27 * u, max(0.12 * u, 1.4 * eh)), 0, 0, 360, _c(skin * 0.55), -1, aa, _SHIFT)
        cv2.ellipse(img, _p(ex, ey), _p(0.21 * u, eh), 0, 0, 360, (215, 215, 210), -1, aa, _SHIFT)
        cv2.circle(img, _p(ex, ey), int(round(min(0.13 * u, eh) * _ONE)), (30, 25, 20), -1, aa, _SHIFT)
        by = ey - 0.24 * u
        lift_in = 0.7 * (shape["brow_in"] + s * shape["brow_asym"] + bounce) * u
        lift_out = 0.7 * (shape["brow_out"] + s * shape["brow_asym"] + bounce) * u
        brow = np.array(
            [
                _p(cx + s * 0.16 * u, by - lift_in),
                _p(cx + s * 0.42 * u, by - (lift_in + lift_out) / 2 - 0.05 * u),
                _p(cx + s * 0.68 * u, by - lift_out),
            ],
            np.int32,
        )
        cv2.polylines(img, [brow], False, (45, 30, 20), max(2, int(0.11 * u)), aa, _SHIFT)

    nose = np.array(
        [_p(cx, cy - 0.05 * ry), _p(cx - 0.09 * u, cy + 0.2 * ry), _p(cx + 0.09 * u, cy + 0.2 * ry)], np.int32
    )
    cv2.fillPoly(img, [nose], _c(skin * 0.82), aa, _SHIFT)

    my = cy + 0.5 * ry
    mw = 0.42 * u * (1 + shape["mouth_w"])
    curve = 0.22 * u * float(traj["valence"][k])
    opening = 0.32 * u * (0.05 + 0.95 * e)
    xs = np.linspace(-1.0, 1.0, 17)
    base = my - curve * xs**2 + 0.5 * curve + shape["tilt"] * 0.15 * u * xs
    upper = base - 0.35 * opening * (1 - xs**2)
    lower = base + 0.65 * opening * (1 - xs**2)
    outline = np.concatenate([np.stack([cx + xs * mw, upper], 1), np.stack([cx + xs[::-1] * mw, lower[::-1]], 1)])
    poly = np.round(outline * _ONE).astype(np.int32)
    cv2.fillPoly(img, [poly], (70, 15, 25), aa, _SHIFT)
    cv2.polylines(img, [poly], True, (150, 35, 45), max(2, int(0.08 * u)), aa, _SHIFT)
    return img


def render_video(lat: Latent, path: str | os.PathLike, size: int = 112, fps: int = 15, seconds: float = 3.0) -> str:
    """Render and encode one video (H.264, yuv420p)."""
    from emovid.video import write_video

    n = int(round(seconds * fps))
    traj = trajectories(lat, n, fps)
    bg = background(lat, size)
    frames = (render_frame(lat, traj, k, size, bg) for k in range(n))
    # One encoder thread per video: parallelism comes from the process pool over videos.
    return write_video(path, frames, fps=fps, crf=18, options={"threads": "1", "preset": "veryfast"})


def _render_job(args) -> str:
    return render_video(*args)


# ---- labels -------------------------------------------------------------------------------------------------


def vce_emotions(lat: Latent) -> tuple[float, ...]:
    """The 27 VCE intensities of a video (see the module docstring)."""
    name = lat.emotion_name
    w = (1 - lat.intensity) / max(lat.intensity, 1e-6) if name == "neutral" else 1.0
    terms = [
        (w * lat.intensity, VCE_PROTOTYPES[name]),
        (0.3 * max(lat.arousal, 0.0), HIGH_AROUSAL),
        (0.3 * max(-lat.arousal, 0.0), LOW_AROUSAL),
        (0.2 * max(lat.valence, 0.0), POSITIVE),
        (0.2 * max(-lat.valence, 0.0), NEGATIVE),
    ]
    out = []
    for emo in VCE_EMOTIONS:
        x = sum(scale * table.get(emo, 0.0) for scale, table in terms)
        out.append(round(min(max(x, 0.0), 1.0) * 120) / 120)
    return tuple(out)


def mosei_intensities(lat: Latent) -> tuple[float, ...]:
    """Six MOSEI intensities (thirds in [0, 3]) of a video; all zero for neutral."""
    out = dict.fromkeys(MOSEI_EMOTIONS, 0.0)
    if lat.emotion_name != "neutral":
        primary = min(9, max(1, math.ceil(9 * lat.intensity - 1e-9)))
        name = FER_TO_MOSEI[lat.emotion_name]
        out[name] = primary / 3
        out[MOSEI_SECONDARY[name]] = math.floor(0.4 * primary) / 3
    return tuple(round(out[e], 6) for e in MOSEI_EMOTIONS)


def ocean_traits(lat: Latent) -> tuple[float, ...]:
    """OCEAN traits in [0, 1], :data:`FIV2_TRAITS` order."""
    x = (lat.valence, lat.arousal, 2 * lat.intensity - 1)
    out = []
    for t in FIV2_TRAITS:
        w = TRAIT_WEIGHTS[t]
        out.append(round(float(np.clip(0.5 + 0.5 * sum(a * b for a, b in zip(w, x, strict=False)), 0, 1)), 6))
    return tuple(out)


def _plutchik(lat: Latent) -> tuple[float, ...]:
    names = PLUTCHIK_MAP[lat.emotion_name]
    counts = dict.fromkeys(PLUTCHIK_EMOTIONS, 0.0)
    for rank, n in enumerate(names):
        counts[n] = float(max(1, 1 + round(3 * lat.intensity) - rank))
    return tuple(counts[e] for e in PLUTCHIK_EMOTIONS)


def _captions(lat: Latent) -> list[str]:
    adj, phrase = _WORDS[lat.emotion_name]
    adverb = "slightly" if lat.intensity < 0.4 else "clearly" if lat.intensity < 0.75 else "extremely"
    pace = "still" if lat.arousal < -0.3 else "moving" if lat.arousal < 0.3 else "bouncing energetically"
    article = "an" if phrase[0] in "aeiou" else "a"
    return [f"a cartoon person looking {adverb} {adj}, {pace}", f"{article} {phrase} while the head keeps {pace}"]


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _fmt(x: float) -> float:
    return round(float(x), 6)


def generate(
    out_dir: str | os.PathLike,
    num_videos: int = 200,
    seed: int = 0,
    size: int = 112,
    fps: int = 15,
    seconds: float = 3.0,
    workers: int | None = None,
    render: bool = True,
) -> dict:
    """Render ``num_videos`` labelled face videos into ``out_dir`` and write labels in every format.

    Args:
        out_dir: output folder (created; existing files of the same names are replaced).
        num_videos: how many videos.
        seed: everything (latents, splits, comparisons) follows from it; label files are byte-identical for
            the same arguments.
        size: frame height and width in pixels (even, ≥ 64).
        fps: frame rate.
        seconds: duration of each video.
        workers: render processes; ``None`` = CPU count, ``0``/``1`` = in this process.
        render: ``False`` writes only the labels (the formats' video paths then point at absent files).

    Returns:
        The manifest (also written to ``synth_manifest.json``).
    """
    if num_videos < 1:
        raise ValueError("num_videos must be >= 1")
    if size < 64 or size % 2:
        raise ValueError("size must be an even number >= 64")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * fps))
    lats = [sample_latent(seed, i) for i in range(num_videos)]
    ids = [lat.video_id for lat in lats]
    trajs = {lat.video_id: trajectories(lat, n_frames, fps) for lat in lats}

    if render:
        jobs = [(lat, out / "videos" / f"{lat.video_id}.mp4", size, fps, seconds) for lat in lats]
        n_workers = (os.cpu_count() or 1) if workers is None else workers
        n_workers = min(n_workers, num_videos)
        if n_workers <= 1:
            for job in jobs:
                _render_job(job)
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(n_workers) as pool:
                list(pool.map(_render_job, jobs, chunksize=max(1, len(jobs) // (4 * n_workers))))

    # Splits by video: test 20 %, val 20 % of the rest, train the remainder.
    s1 = split_ids(ids, 0.2, seed)
    s2 = split_ids(s1.train, 0.2, seed + 1)
    split_of = {**dict.fromkeys(s2.train, "train"), **dict.fromkeys(s2.val, "val"), **dict.fromkeys(s1.val, "test")}
    mean_val = {v: float(trajs[v]["valence"].mean()) for v in ids}
    by_id = {lat.video_id: lat for lat in lats}
    formats: dict[str, dict] = {}

    # intensity CSV
    rows = [[f"videos/{v}.mp4", f"{by_id[v].intensity:.6f}"] for v in ids]
    _write_text(out / "intensity.csv", _csv_text(["video_path", "intensity_score"], rows))
    formats["intensity"] = {"path": "intensity.csv", "video_root": "."}

    # VCE + V2V share metadata.json
    meta = {
        v: {
            "codec_name": "h264",
            "duration": f"{n_frames / fps:.6f}",
            "file": f"videos/{v}.mp4",
            "frame_rate": f"{fps}/1",
            "height": size,
            "number_of_frames": str(n_frames),
            "width": size,
        }
        for v in ids
    }
    for sub in ("vce", "v2v"):
        write_json(out / sub / "metadata.json", meta)
        if render:
            for v in ids:
                _link(out / "videos" / f"{v}.mp4", out / sub / "videos" / f"{v}.mp4")
    for split, members in (("train", [v for v in ids if split_of[v] != "test"]), ("test", s1.val)):
        labels = {}
        for v in members:
            emo = vce_emotions(by_id[v])
            order = sorted(range(len(emo)), key=lambda j: (-emo[j], j))[:3]
            labels[v] = {
                "emotions": dict(zip(VCE_EMOTIONS, emo, strict=False)),
                "file": f"videos/{v}.mp4",
                "topK": [VCE_EMOTIONS[j] for j in order],
            }
        write_json(out / "vce" / f"{split}_labels.json", labels)
    formats["vce"] = {"path": "vce", "splits": ["train", "test"]}

    v2v = _v2v_comparisons(seed, split_of, ids, mean_val)
    for split, comps in v2v.items():
        write_json(out / "v2v" / f"{split}_labels.json", {"comparisons": comps})
    formats["v2v"] = {"path": "v2v", "splits": list(v2v)}

    # MOSEI CSV
    mosei_split = {"train": "train", "val": "dev", "test": "test"}
    rows = [[v, *(f"{x:.6f}" for x in mosei_intensities(by_id[v])), mosei_split[split_of[v]]] for v in ids]
    _write_text(out / "mosei.csv", _csv_text(["video_id", *MOSEI_EMOTIONS, "split"], rows))
    formats["mosei"] = {"path": "mosei.csv", "video_root": "videos"}

    # FIV2 pickles + 75-folder layout
    fiv2_names = {"train": ("training", "annotation_training.pkl"), "val": ("validation", "annotation_validation.pkl")}
    fiv2_names["test"] = ("test", "annotation_test.pkl")
    fiv2_files = {}
    for split, (prefix, pkl) in fiv2_names.items():
        members = [v for v in ids if split_of[v] == split]
        ann: dict[str, dict[str, float]] = {t: {} for t in ("extraversion", "neuroticism", "agreeableness")}
        ann.update({"conscientiousness": {}, "interview": {}, "openness": {}})
        for j, v in enumerate(members):
            key = f"{v}.000.mp4"
            traits = dict(zip(FIV2_TRAITS, ocean_traits(by_id[v]), strict=False))
            for t, x in traits.items():
                ann[t][key] = x
            ann["interview"][key] = round((traits["extraversion"] + traits["agreeableness"]) / 2, 6)
            folder = f"{prefix}80_{j % 25 + 1:02d}"
            fiv2_files[v] = f"fiv2/{folder}/{key}"
            if render:
                _link(out / "videos" / f"{v}.mp4", out / fiv2_files[v])
        with atomic_path(out / "fiv2" / pkl) as tmp:
            tmp.write_bytes(pickle.dumps(ann, protocol=2))
    formats["fiv2"] = {"path": "fiv2", "files": [f[1] for f in fiv2_names.values()], "video_dirs": ["fiv2"]}

    # SEWA-style valence/arousal per frame
    rows = []
    for v in ids:
        tr = trajs[v]
        for k in range(n_frames):
            rows.append([v, f"{tr['time'][k]:.4f}", f"{tr['valence'][k]:.4f}", f"{tr['arousal'][k]:.4f}"])
    _write_text(out / "va.csv", _csv_text(["video", "time", "valence", "arousal"], rows))
    formats["va"] = {"path": "va.csv", "video_root": "videos"}

    # captions: seed-002 emotion records and MSR-VTT style
    caps = []
    msr_rows, msr_sent = [], []
    for v in ids:
        lat = by_id[v]
        plut = _plutchik(lat)
        texts = _captions(lat)
        pos = float(round(1 + 3 * lat.valence)) if lat.valence > 0.2 else 0.0
        neg = float(round(1 - 3 * lat.valence)) if lat.valence < -0.2 else 0.0
        rec = {"video": f"{v}.mp4", "video_id": v, "caption": texts[0], "duration": _fmt(n_frames / fps)}
        rec.update({"emotion": int(any(plut)), "positive": pos, "negative": neg, "neutral": 0.0 if pos or neg else 1.0})
        rec.update(dict(zip(PLUTCHIK_EMOTIONS, plut, strict=False)))
        caps.append(rec)
        for t in texts:
            msr_rows.append([v, t])
            msr_sent.append({"caption": t, "video_id": v, "sen_id": len(msr_sent)})
    write_json(out / "captions.json", caps)
    _write_text(out / "msrvtt_captions.csv", _csv_text(["video_id", "sentence"], msr_rows))
    msr_videos = [{"video_id": v, "split": split_of[v]} for v in ids]
    write_json(out / "msrvtt_captions.json", {"videos": msr_videos, "sentences": msr_sent})
    formats["captions"] = {"path": "captions.json", "video_root": "videos"}
    formats["msrvtt"] = {"path": "msrvtt_captions.csv", "video_root": "videos", "json": "msrvtt_captions.json"}

    videos = []
    for lat in lats:
        v = lat.video_id
        d = asdict(lat)
        videos.append(
            {
                "video_id": v,
                "file": f"videos/{v}.mp4",
                "split": split_of[v],
                "emotion": lat.emotion,
                "emotion_name": lat.emotion_name,
                "intensity": _fmt(lat.intensity),
                "valence": _fmt(lat.valence),
                "arousal": _fmt(lat.arousal),
                "valence_rendered_mean": _fmt(mean_val[v]),
                "arousal_rendered_mean": _fmt(trajs[v]["arousal"].mean()),
                "traits": dict(zip(FIV2_TRAITS, ocean_traits(lat), strict=False)),
                "fiv2_file": fiv2_files[v],
                "nuisance": {
                    k: (
                        [_fmt(x) for x in d[k]]
                        if isinstance(d[k], (tuple, list))
                        else _fmt(d[k])
                        if isinstance(d[k], float)
                        else d[k]
                    )
                    for k in ("scale", "dx", "dy", "skin", "bg_top", "bg_bottom", "motion", "phase")
                },
            }
        )
    manifest = {
        "generator": "emovid.data.synth",
        "version": SYNTH_VERSION,
        "seed": seed,
        "num_videos": num_videos,
        "size": size,
        "fps": fps,
        "seconds": seconds,
        "num_frames": n_frames,
        "rendered": render,
        "emotion_classes": list(FER_CLASSES),
        "formats": formats,
        "videos": videos,
    }
    write_json(out / "synth_manifest.json", manifest)
    _make_readable(out)
    return manifest


def _make_readable(out: Path) -> None:
    # Atomic writes start from private temporary files (mode 0600); datasets are meant to be shared.
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for p in out.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, mode)


def _v2v_comparisons(seed: int, split_of: dict[str, str], ids: list[str], val: dict[str, float]) -> dict[str, list]:
    rng = np.random.default_rng([int(seed), 2**20])
    out: dict[str, list] = {}
    for split, group in (("train", "train"), ("test", "test")):
        members = [v for v in ids if split_of[v] == group]
        seen, comps = set(), []
        for a in members:
            others = [b for b in members if b != a]
            for b in rng.permutation(others)[:3] if others else []:
                b = str(b)
                if abs(val[a] - val[b]) < 0.1 or frozenset((a, b)) in seen:
                    continue
                seen.add(frozenset((a, b)))
                comps.append(sorted((a, b), key=lambda x: val[x]))
        out[split] = comps
    members = [str(v) for v in rng.permutation([v for v in ids if split_of[v] == "val"])]
    lists, i = [], 0
    while len(members) - i >= 2:
        k = int(rng.integers(2, 5))
        k = min(k, len(members) - i)
        if len(members) - i - k == 1:
            k = k - 1 if k > 2 else k + 1  # never leave a single video behind
        chunk = members[i : i + k]
        i += k
        lists.append(sorted(chunk, key=lambda x: val[x]))
    out["listwise"] = lists
    return out


__all__ = [
    "CLASS_AROUSAL",
    "CLASS_VALENCE",
    "PROTOTYPES",
    "TRAIT_WEIGHTS",
    "VCE_PROTOTYPES",
    "Latent",
    "generate",
    "mosei_intensities",
    "ocean_traits",
    "render_frame",
    "render_video",
    "sample_latent",
    "trajectories",
    "vce_emotions",
]
