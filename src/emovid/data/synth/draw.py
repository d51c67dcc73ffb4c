"""Drawing the cartoon face of a :class:`~emovid.data.synth.latent.Latent`, frame by frame, and encoding videos."""

from __future__ import annotations

import os

import numpy as np

from emovid.data.synth.latent import Latent, trajectories

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

_SHIFT = 4  # sub-pixel drawing: OpenCV takes fixed-point coordinates with this many fractional bits
_ONE = 1 << _SHIFT


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
