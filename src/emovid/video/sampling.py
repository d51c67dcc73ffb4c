"""Which frames to decode: pure functions from a video's length (or frame times) to frame indices.

Samplers never touch the file; :meth:`emovid.video.VideoReader.get_frames` decodes what they choose, seeking
to keyframes so sparse choices stay cheap.

* :func:`uniform_indices` — N frames spread over the whole video (the centre of N equal segments).
* :func:`random_clip_indices` — a random clip of T frames at stride s (training).
* :func:`sliding_window_indices` — windows of T frames every h frames (inference over long videos).
* :func:`indices_at_rate` — the frame showing at each tick of a fixed rate (e.g. 5 fps analysis).

:func:`parse_sampler` turns a short spec (``uniform:16``, ``random:16x4``, ``sliding:16:8``, ``rate:5``) into a
callable sampler for configs and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emovid.errors import ConfigError


def uniform_indices(num_frames: int, n: int) -> list[int]:
    """The centre frame of each of ``n`` equal segments of ``[0, num_frames)``; repeats when ``n > num_frames``."""
    if num_frames <= 0 or n <= 0:
        return []
    return [min(num_frames - 1, int((i + 0.5) * num_frames / n)) for i in range(n)]


def clip_span(clip_len: int, stride: int) -> int:
    """Frames covered by a clip of ``clip_len`` frames taken every ``stride`` frames."""
    return (clip_len - 1) * stride + 1


def _clip(start: int, clip_len: int, stride: int, num_frames: int) -> list[int]:
    # A clip longer than the video repeats its last frame (the usual padding of video models).
    return [min(start + j * stride, num_frames - 1) for j in range(clip_len)]


def random_clip_indices(
    num_frames: int, clip_len: int, stride: int = 1, rng: np.random.Generator | int | None = None
) -> list[int]:
    """A clip of ``clip_len`` frames every ``stride`` frames starting at a uniformly random position."""
    if num_frames <= 0:
        return []
    rng = np.random.default_rng(rng)
    last_start = num_frames - clip_span(clip_len, stride)
    start = int(rng.integers(0, last_start + 1)) if last_start > 0 else 0
    return _clip(start, clip_len, stride, num_frames)


def center_clip_indices(num_frames: int, clip_len: int, stride: int = 1) -> list[int]:
    """The clip of ``clip_len`` frames every ``stride`` frames centred in the video (deterministic eval)."""
    if num_frames <= 0:
        return []
    start = max(0, (num_frames - clip_span(clip_len, stride)) // 2)
    return _clip(start, clip_len, stride, num_frames)


def sliding_window_indices(
    num_frames: int, clip_len: int, hop: int, stride: int = 1, cover_end: bool = True
) -> list[list[int]]:
    """Clips of ``clip_len`` frames (every ``stride`` frames) starting every ``hop`` frames.

    Args:
        cover_end: add one clip aligned to the video's end when the regular windows stop short of it.
    """
    if num_frames <= 0:
        return []
    if hop <= 0:
        raise ConfigError("sliding window hop must be positive")
    span = clip_span(clip_len, stride)
    if span >= num_frames:
        return [_clip(0, clip_len, stride, num_frames)]
    starts = list(range(0, num_frames - span + 1, hop))
    if cover_end and starts[-1] + span < num_frames:
        starts.append(num_frames - span)
    return [_clip(s, clip_len, stride, num_frames) for s in starts]


def sample_times(duration: float, fps: float) -> np.ndarray:
    """Sample times ``0, 1/fps, 2/fps, ...`` strictly before ``duration``."""
    if fps <= 0:
        raise ConfigError(f"sampling rate must be positive, got {fps}")
    n = int(np.ceil(duration * fps - 1e-9))
    return np.arange(max(n, 0)) / fps


def indices_at_rate(frame_times: np.ndarray, fps: float, duration: float | None = None) -> list[int]:
    """Index of the frame showing at each sample time of a ``fps`` clock (repeats dropped).

    Args:
        frame_times: presentation time of every frame in seconds, ascending, first at 0.
        fps: sampling rate.
        duration: video duration; defaults to one mean frame interval past the last frame.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        return []
    if duration is None:
        step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1.0 / fps
        duration = float(times[-1] + step)
    ticks = sample_times(duration, fps)
    # A tick belongs to the last frame that started at or before it; 1e-6 s absorbs timestamp rounding.
    idx = np.searchsorted(times, ticks + 1e-6, side="right") - 1
    idx = np.clip(idx, 0, len(times) - 1)
    return [int(i) for i in dict.fromkeys(idx.tolist())]


# ---- sampler objects for configs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSampler:
    """Chooses clips (lists of frame indices) from a video of known length.

    Attributes:
        kind: ``uniform`` | ``random`` | ``center`` | ``sliding`` | ``rate``.
        num_frames: frames per clip (``uniform``: frames over the whole video).
        stride: frame step inside a clip.
        hop: frame step between sliding windows.
        fps: sampling rate for ``rate``.
    """

    kind: str = "uniform"
    num_frames: int = 16
    stride: int = 1
    hop: int = 8
    fps: float = 5.0

    def __call__(
        self, num_frames: int, frame_times: np.ndarray | None = None, rng: np.random.Generator | int | None = None
    ) -> list[list[int]]:
        if self.kind == "uniform":
            return [uniform_indices(num_frames, self.num_frames)]
        if self.kind == "random":
            return [random_clip_indices(num_frames, self.num_frames, self.stride, rng)]
        if self.kind == "center":
            return [center_clip_indices(num_frames, self.num_frames, self.stride)]
        if self.kind == "sliding":
            return sliding_window_indices(num_frames, self.num_frames, self.hop, self.stride)
        if self.kind == "rate":
            if frame_times is None:
                raise ConfigError("the 'rate' sampler needs the video's frame times")
            return [indices_at_rate(frame_times, self.fps)]
        raise ConfigError(f"unknown sampler kind {self.kind!r}")

    def __str__(self) -> str:
        return {
            "uniform": f"uniform:{self.num_frames}",
            "random": f"random:{self.num_frames}x{self.stride}",
            "center": f"center:{self.num_frames}x{self.stride}",
            "sliding": f"sliding:{self.num_frames}x{self.stride}:{self.hop}",
            "rate": f"rate:{self.fps:g}",
        }.get(self.kind, self.kind)


def parse_sampler(spec: str) -> ClipSampler:
    """Parse ``uniform:N`` | ``random:TxS`` | ``center:TxS`` | ``sliding:TxS:H`` (or ``sliding:T:H``) | ``rate:FPS``."""
    try:
        kind, _, rest = spec.partition(":")
        kind = kind.strip().lower()
        if kind == "uniform":
            return ClipSampler("uniform", num_frames=int(rest))
        if kind in ("random", "center"):
            t, _, s = rest.partition("x")
            return ClipSampler(kind, num_frames=int(t), stride=int(s or 1))
        if kind == "sliding":
            clip, _, hop = rest.partition(":")
            t, _, s = clip.partition("x")
            return ClipSampler("sliding", num_frames=int(t), stride=int(s or 1), hop=int(hop))
        if kind == "rate":
            return ClipSampler("rate", fps=float(rest))
    except ValueError:
        pass
    raise ConfigError(f"bad sampler spec {spec!r}; use uniform:N, random:TxS, center:TxS, sliding:TxS:HOP or rate:FPS")
