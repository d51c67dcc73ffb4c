"""Writing videos from frames (synthetic data, test fixtures, benchmarks), atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from emovid.utils.io import atomic_path

LOSSLESS_CODECS = ("libx264rgb", "ffv1")


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float | Fraction = 30,
    codec: str = "libx264",
    crf: int | None = None,
    gop: int | None = None,
    pix_fmt: str | None = None,
    rotation: int | None = None,
    frame_times: Iterable[float] | None = None,
    audio: bool = False,
    options: dict[str, str] | None = None,
) -> str:
    """Encode RGB ``uint8 [H, W, 3]`` frames to ``path`` (written to a temporary file, then renamed).

    Args:
        fps: nominal frame rate.
        codec: FFmpeg encoder. ``libx264rgb`` with ``crf=0`` or ``ffv1`` are lossless in RGB.
        crf: x264/x265 constant rate factor (0 = lossless).
        gop: keyframe interval; ``None`` keeps the encoder's default (250 for x264).
        pix_fmt: pixel format; defaults to ``rgb24``/``bgr0`` for lossless codecs and ``yuv420p`` otherwise.
        rotation: display-matrix rotation in degrees counter-clockwise (how phones mark portrait video).
        frame_times: per-frame presentation times in seconds, for variable-frame-rate video.
        audio: add a silent AAC track.
        options: extra encoder options.

    Returns:
        The path written.
    """
    import av

    path = os.fspath(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    h, w = first.shape[:2]
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    if pix_fmt is None:
        pix_fmt = {"libx264rgb": "rgb24", "ffv1": "bgr0"}.get(codec, "yuv420p")
    opts = dict(options or {})
    if crf is not None:
        opts["crf"] = str(crf)
    if gop is not None:
        opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if "264" in codec else {"g": str(gop)})
    times = iter(frame_times) if frame_times is not None else None
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=_format_for(path)) as c:
        s = c.add_stream(codec, rate=rate, options=opts)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if times is not None:  # variable frame rate: millisecond timestamps
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i, img in enumerate(_chain(first, frames)):  # noqa: B007 - i counts frames for the audio track
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img, dtype=np.uint8), format="rgb24")
            if times is not None:
                f.pts = int(round(next(times) * 1000))
                f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            n = int(round(16000 * (i + 1) / float(rate)))
            for start in range(0, n, 1024):
                chunk = np.zeros((1, min(1024, n - start)), np.float32)
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate = 16000
                af.pts = start
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def _format_for(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}.get(ext)
