"""Which frames to decode: pure functions from a video's length (or frame times) to frame indices.

Samplers never touch the file; :meth:`emovid.video.VideoReader.get_frames` decodes what they choose, seeking
to keyframes so sparse choices stay cheap.

* :func:`uniform_indices` — N frames spread over the whole video (the centre of N equal segments).
* :func:`random_clip_indices` — a random clip of T frames at stride s (training).
* :func:`sliding_window_indices` — windows of T frames every h frames (inference over long videos).
* :func:`covering_clips` — clips that show every frame exactly once (sequence-level evaluation).
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


def covering_clips(num_frames: int, clip_len: int, stride: int = 1) -> list[tuple[list[int], list[bool]]]:
    """Clips that together show every frame of the video exactly once: ``[(indices, keep), ...]``.

    Blocks of ``clip_len * stride`` frames follow each other; inside a block, ``stride`` clips at offsets
    ``0 .. stride - 1`` take every ``stride``-th frame, so each clip keeps the model's frame step. When the blocks
    stop short of the end, one more block is aligned to the video's end. ``keep[j]`` says whether frame
    ``indices[j]`` is scored by this clip: false for frames an earlier clip already covered (the end-aligned
    block's overlap, the last frame repeated to fill a clip longer than the video). Sequence-level metrics
    (e.g. CCC over all frames of valence/arousal videos) are then computed on every frame once.
    """
    if num_frames <= 0:
        return []
    if clip_len <= 0 or stride <= 0:
        raise ConfigError("clip length and stride must be positive")
    block = clip_len * stride
    starts = list(range(0, max(num_frames - block, 0) + 1, block))
    if starts[-1] + block < num_frames:
        starts.append(num_frames - block)
    seen = np.zeros(num_frames, bool)
    out = []
    for b in starts:
        for p in range(stride):
            idx = _clip(b + p, clip_len, stride, num_frames)
            keep = []
            for i in idx:
                keep.append(not seen[i])
                seen[i] = True
            if any(keep):
                out.append((idx, keep))
    return out


def frames_for_seconds(seconds: float, fps: float, stride: int = 1) -> int:
    """Frames of a clip lasting ``seconds`` at ``fps`` taken every ``stride`` frames (at least 2)."""
    return max(2, int(round(seconds * fps / stride)))


def mean_fps(frame_times: np.ndarray) -> float:
    """Frames per second from frame timestamps (:func:`emovid.video.probe`'s rule); 0 when fewer than 2 frames."""
    t = np.asarray(frame_times, np.float64)
    span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    return (len(t) - 1) / span if span > 0 else 0.0


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
        seconds: clips (``random``, ``center``, ``sliding``) of this duration instead of ``num_frames``: each video
            gets :func:`frames_for_seconds` at its own frame rate (``num_frames`` when it has a single frame).
    """

    kind: str = "uniform"
    num_frames: int = 16
    stride: int = 1
    hop: int = 8
    fps: float = 5.0
    seconds: float | None = None

    def clip_frames(self, frame_times: np.ndarray | None = None) -> int:
        """Frames per clip for a video with these frame times (``num_frames`` unless ``seconds`` is set)."""
        if self.seconds is None or frame_times is None:
            return self.num_frames
        fps = mean_fps(frame_times)
        return frames_for_seconds(self.seconds, fps, self.stride) if fps > 0 else self.num_frames

    def __call__(
        self, num_frames: int, frame_times: np.ndarray | None = None, rng: np.random.Generator | int | None = None
    ) -> list[list[int]]:
        if self.kind == "uniform":
            return [uniform_indices(num_frames, self.num_frames)]
        n = self.clip_frames(frame_times)
        if self.kind == "random":
            return [random_clip_indices(num_frames, n, self.stride, rng)]
        if self.kind == "center":
            return [center_clip_indices(num_frames, n, self.stride)]
        if self.kind == "sliding":
            return sliding_window_indices(num_frames, n, self.hop, self.stride)
        if self.kind == "rate":
            if frame_times is None:
                raise ConfigError("the 'rate' sampler needs the video's frame times")
            return [indices_at_rate(frame_times, self.fps)]
        raise ConfigError(f"unknown sampler kind {self.kind!r}")

    def __str__(self) -> str:
        clip = f"{self.seconds:g}s" if self.seconds is not None else str(self.num_frames)
        return {
            "uniform": f"uniform:{self.num_frames}",
            "random": f"random:{clip}x{self.stride}",
            "center": f"center:{clip}x{self.stride}",
            "sliding": f"sliding:{clip}x{self.stride}:{self.hop}",
            "rate": f"rate:{self.fps:g}",
        }.get(self.kind, self.kind)


def _clip_size(t: str) -> dict:
    """``num_frames`` from ``T``, or ``seconds`` from ``Ts`` (e.g. ``4s``: four seconds at each video's frame rate)."""
    t = t.strip().lower()
    if t.endswith("s"):
        seconds = float(t[:-1])
        if not seconds > 0:
            raise ValueError(t)
        return {"seconds": seconds, "num_frames": 2}  # num_frames: the fallback for single-frame videos
    return {"num_frames": int(t)}


def parse_sampler(spec: str) -> ClipSampler:
    """Parse ``uniform:N`` | ``random:TxS`` | ``center:TxS`` | ``sliding:TxS:H`` (or ``sliding:T:H``) | ``rate:FPS``.

    ``T`` may be a duration such as ``4s``: clips of 4 seconds, in frames at each video's own frame rate.
    """
    try:
        kind, _, rest = spec.partition(":")
        kind = kind.strip().lower()
        if kind == "uniform":
            return ClipSampler("uniform", num_frames=int(rest))
        if kind in ("random", "center"):
            t, _, s = rest.partition("x")
            return ClipSampler(kind, stride=int(s or 1), **_clip_size(t))
        if kind == "sliding":
            clip, _, hop = rest.partition(":")
            t, _, s = clip.partition("x")
            return ClipSampler("sliding", stride=int(s or 1), hop=int(hop), **_clip_size(t))
        if kind == "rate":
            return ClipSampler("rate", fps=float(rest))
    except ValueError:
        pass
    raise ConfigError(f"bad sampler spec {spec!r}; use uniform:N, random:TxS, center:TxS, sliding:TxS:HOP or rate:FPS")
