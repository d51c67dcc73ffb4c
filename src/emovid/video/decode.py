"""Streaming video decoding on PyAV.

:class:`VideoReader` opens a file once, reads the container's packet index (a demux pass without decoding,
milliseconds for a short clip; the packets of a video stream up to 48 MB stay in memory, so later decoding reads
nothing from the file again) and then serves:

* exact frames by index (:meth:`VideoReader.get_frames`), seeking to the keyframe before each wanted frame
  when that is cheaper than decoding forward, and converting only the frames asked for to RGB; wanted frames
  spread over independent keyframe groups are decoded on two decoders at once (two threads);
* a sequential stream of frames (:meth:`VideoReader.iter_frames`) and a stream sampled at a fixed rate
  (:meth:`VideoReader.iter_at_rate`) that hold one frame at a time, for hour-long inputs.

Frame *i* is the *i*-th frame in presentation order, so indices are exact for variable-frame-rate video too.
Frames come out upright: the container's display-matrix rotation is applied.

Damaged files are decoded as far as they go and the damage is reported, never hidden: a cut-off file serves the
frames it holds (``len(reader)``), and :attr:`VideoReader.damage` says what is missing or failed to decode so
far. Implausible header values (frame rate, duration, rotation) become :attr:`VideoInfo.warnings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emovid.errors import FrameIndexError, TruncatedVideoError

# Damage and header-check names live in emovid.video.damage; re-exported because callers import them from here.
from emovid.video.damage import FPS_MAX, FPS_MIN, damage_message  # noqa: F401
from emovid.video.ffmpeg_log import _LOG
from emovid.video.stream import _check_path, _open_container, _StreamDecoder

_THREAD_TYPES = ("AUTO", "FRAME", "SLICE", "NONE")
_MISSING = ("raise", "nearest")


def _cores() -> int:
    from emovid.utils.threads import usable_cores

    return usable_cores()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video.

    Attributes:
        path: the file.
        duration: seconds from the first frame's start to the last frame's end.
        fps: average frame rate (frames / duration).
        variable_fps: whether frame durations vary by more than timestamp rounding.
        num_frames: number of frames the file holds.
        num_frames_exact: True when counted from the packet index (always, unless the scan was cut short).
        truncated: the container declares more frames than the file holds (a cut-off download or copy).
        width: display width, after rotation.
        height: display height, after rotation.
        rotation: degrees counter-clockwise the coded picture is rotated for display (FFmpeg's display matrix);
            0 when the matrix is implausible (see ``warnings``).
        codec: decoder name, e.g. ``h264``.
        has_audio: whether the container holds an audio stream.
        container: the demuxer name, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``.
        warnings: implausible metadata, one sentence each (a frame rate outside (0.5, 1000] fps, a duration the
            header contradicts, a display matrix that is no rotation by a multiple of 90°). The values above are
            still what the frames' timestamps say; the warning says not to trust them.
        damage: :attr:`VideoReader.damage` when probed (``None`` for a sound file): frames missing against the
            declared count, a stream that ends early, decode errors met so far.
    """

    path: str
    duration: float
    fps: float
    variable_fps: bool
    num_frames: int
    num_frames_exact: bool
    truncated: bool
    width: int
    height: int
    rotation: int
    codec: str
    has_audio: bool
    container: str
    warnings: list[str] = field(default_factory=list)
    damage: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class VideoReader(_StreamDecoder):
    """Random access and streaming over one video file.

    Args:
        path: video file.
        threads: decoder threads; 0 lets FFmpeg choose.
        thread_type: FFmpeg threading: ``AUTO`` (frame + slice), ``FRAME``, ``SLICE`` or ``NONE``. Frame threading
            speeds up sequential streaming (:meth:`iter_frames`, :meth:`iter_at_rate`) but every seek drains its
            pipeline, so sparse :meth:`get_frames` is faster with ``SLICE`` (measured in ``bench/decode.py``).
            With ``threads != 1`` on a machine with more than one usable core, :meth:`get_frames` decodes wanted frames
            that lie in independent keyframe groups on a second decoder in a thread (fed from the packets kept in
            memory, or a second demuxer of a larger file), when that splits the decoding about evenly (same frames,
            same damage record); ``threads=1`` keeps to one thread.

    Raises:
        InputNotFoundError: the file does not exist.
        SpecialFileError: it is a folder, FIFO, device or socket (refused before opening: a FIFO would block).
        NotAVideoError: FFmpeg cannot open it.
        NoVideoStreamError: it has no video stream (audio-only).
        UnsupportedCodecError: no decoder for its codec in this FFmpeg build.
        EmptyVideoError: the stream holds no frame, or none decodes.

    A damaged file opens as long as one frame decodes: ``len(reader)`` counts the frames it holds (a cut-off
    file's incomplete last packet is left out), and :attr:`damage` reports what is missing or failed to decode,
    updated while decoding. Check it after processing, and pass :attr:`damage_summary` on as a warning.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0, thread_type: str = "AUTO"):
        self.path = _check_path(path)
        if thread_type.upper() not in _THREAD_TYPES:
            raise ValueError(f"thread_type must be one of {_THREAD_TYPES}")
        _LOG.install()
        _LOG.take_foreign()  # left over from earlier decoding, not this file's
        self._container = _open_container(self.path)
        # Sparse get_frames may decode independent keyframe groups on a second demuxer at once (threads=1: never).
        self._parallel = threads != 1
        try:
            self._init_stream(threads, thread_type.upper())
        except BaseException:
            self._close_container()
            raise

    # ---- metadata ------------------------------------------------------------------------------------------

    def _timing(self) -> tuple[float, float]:
        """``(fps, duration)`` from the frames' timestamps."""
        s = self._stream
        pts = self._pts
        n = len(pts)
        if n > 1:
            span = float(pts[-1] - pts[0]) * self._tb
            fps = (n - 1) / span if span > 0 else float(s.average_rate or 0)
        else:
            fps = float(s.average_rate or s.guessed_rate or 0.0)
        if not fps or not math.isfinite(fps):
            fps = 0.0
        return fps, (n / fps if fps > 0 else 0.0)

    @property
    def info(self) -> VideoInfo:
        s = self._stream
        n = len(self._pts)
        fps, duration = self._timing()
        deltas = np.diff(self._pts)
        variable = False
        if len(deltas) > 1:
            med = float(np.median(deltas))
            variable = float(deltas.max() - deltas.min()) > max(2.0, 0.05 * med)
        w, h = s.codec_context.width, s.codec_context.height
        if self._rotation % 180 == 90:
            w, h = h, w
        return VideoInfo(
            path=self.path,
            duration=duration,
            fps=fps,
            variable_fps=variable,
            num_frames=n,
            num_frames_exact=self._scan_complete,
            truncated=self._declared_frames > n or self._ended_early() is not None,
            width=int(w),
            height=int(h),
            rotation=self._rotation,
            codec=s.codec_context.name,
            has_audio=self._has_audio,
            container=self._container.format.name,
            warnings=self._warnings(fps, duration),
            damage=self.damage,
        )

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def frame_times(self) -> np.ndarray:
        """Presentation time in seconds of every frame, relative to the first."""
        return (self._pts - self._pts[0]).astype(np.float64) * self._tb

    # ---- frame access --------------------------------------------------------------------------------------

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self._pts)
        if idx.size and idx.max() >= n and self._declared_frames > n:
            raise TruncatedVideoError(
                f"frame {int(idx.max())} is missing: the file is truncated (it declares {self._declared_frames} "
                f"frames, holds {n}); ask for frames below len(reader) or get a complete copy",
                self.path,
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise FrameIndexError(
                f"frame indices must lie in [0, {n}); got {int(idx.min())}..{int(idx.max())}", self.path
            )
        return np.where(idx < 0, idx + n, idx)

    def get_frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = None, missing: str = "raise"
    ) -> np.ndarray:
        """Decode the frames at ``indices`` (presentation order, any order, repeats allowed).

        Args:
            indices: frame indices below ``len(self)``; negative ones count from the end.
            size: optional ``(height, width)`` to resize to while converting (FFmpeg's area filter), which is
                much cheaper than resizing full-size frames afterwards.
            missing: what to do with a wanted frame that does not decode (a damaged stream): ``raise``, or
                ``nearest`` to repeat the nearest wanted frame that did (booked in :attr:`damage` as lost).

        Returns:
            ``uint8`` array ``[N, H, W, 3]`` in RGB, frames in the order of ``indices``.

        Raises:
            FrameIndexError: an index lies outside the video.
            TruncatedVideoError: an index lies beyond the frames a cut-off file holds; or a wanted frame cannot be
                decoded (with ``missing="nearest"``: none of them can).
        """
        if missing not in _MISSING:
            raise ValueError(f"missing must be one of {_MISSING}")
        idx = self._check_indices(indices)
        if idx.size == 0:
            h, w = size if size is not None else (self.info.height, self.info.width)
            return np.zeros((0, h, w, 3), np.uint8)
        wanted = np.unique(idx)
        out: dict[int, np.ndarray] = {}
        self._wanted = {int(p) for p in self._pts[wanted]}
        plan = self._group_plan(wanted) if self._parallel and _cores() > 1 else None
        try:
            if plan is None:
                self._decode_wanted(self, list(map(int, wanted)), size, missing, out)
            else:
                self._decode_two_demuxers(plan, size, missing, out)
        finally:
            self._wanted = None
            self._frames = None  # the decoder state was built with skipping; start clean next time
        if len(out) < len(wanted):
            if not out:
                raise TruncatedVideoError(
                    f"none of the {len(wanted)} wanted frames can be decoded: the stream is damaged; re-encode it",
                    self.path,
                )
            got = np.asarray(sorted(out))
            for i in (int(i) for i in wanted if int(i) not in out):
                k = int(np.searchsorted(got, i))
                before, after = got[max(k - 1, 0)], got[min(k, len(got) - 1)]
                out[i] = out[int(before if abs(i - before) <= abs(after - i) else after)]
        return np.stack([out[int(i)] for i in idx])

    def _decode_wanted(self, dec, wanted: list[int], size, missing: str, out: dict) -> None:
        """Decode ``wanted`` (sorted frame indices) with decoder ``dec`` (this reader or a companion) into ``out``."""
        for i in wanted:
            if missing == "nearest" and i in self._lost:
                continue  # known not to decode: spare the retry from the first frame
            try:
                out[i] = dec._to_array(dec._seek_or_continue(int(self._pts[i]), i), size)
            except TruncatedVideoError:
                dec._lost.add(i)
                if missing == "raise":
                    raise

    def _decode_two_demuxers(self, plan: tuple[list[int], list[int]], size, missing: str, out: dict) -> None:
        """Decode two runs of independent keyframe groups at once: the first here, the second on a second decoder
        in a thread (FFmpeg decodes and converts without holding the GIL). Same frames as one decoder; the second
        one's damage is booked here."""
        import threading

        first, second = plan
        theirs: dict[int, np.ndarray] = {}
        box: dict = {}

        def work() -> None:
            other = None
            try:
                other = self._companion()
                self._decode_wanted(other, second, size, missing, theirs)
            except BaseException as e:  # re-raised on the calling thread
                box["error"] = e
            finally:
                if other is not None:
                    box["other"] = other

        t = threading.Thread(target=work, name="emovid-gop-decoder", daemon=True)
        t.start()
        try:
            self._decode_wanted(self, first, size, missing, out)
        finally:
            t.join()
            other = box.get("other")
            if other is not None:
                self._absorb(other)
                other._close_container()
        out.update(theirs)
        if "error" in box:
            raise box["error"]

    def iter_frames(
        self, start: int = 0, stop: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        """Stream frames ``start <= i < stop`` in order as ``(index, time_s, rgb_array)``; one frame in memory.

        Frames that do not decode are left out (and booked in :attr:`damage`).

        Raises:
            TruncatedVideoError: no frame at all could be decoded.
        """
        n = len(self._pts)
        stop = n if stop is None else min(stop, n)
        if start >= stop:
            return
        times = self.frame_times
        pts_to_idx = {int(p): i for i, p in enumerate(self._pts)}
        got = 0
        expected = start  # the next index due
        for t, frame in self._decode_from(int(self._pts[start]), int(self._pts[start])):
            i = pts_to_idx.get(int(t))
            if i is None:
                continue
            if i >= stop:
                break
            if i > expected:
                self._lost.update(range(expected, i))
            expected = max(expected, i + 1)
            got += 1
            yield i, float(times[i]), self._to_array(frame, size)
        else:
            self._lost.update(range(expected, stop))  # the stream gave out before ``stop``
        if got == 0:
            raise TruncatedVideoError("no frame could be decoded; the file is damaged", self.path)

    def iter_at_rate(self, fps: float, size: tuple[int, int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """Stream frames sampled at ``fps`` (the frame showing at each sample time), as ``(index, time_s, rgb)``.

        Only the sampled frames are converted to RGB; memory stays at one frame whatever the video's length.
        A sampled frame that does not decode is skipped, not invented (and booked in :attr:`damage`).
        """
        from emovid.video.sampling import indices_at_rate

        wanted = sorted(set(indices_at_rate(self.frame_times, fps)))
        if not wanted:
            return
        times = self.frame_times
        pts_to_idx = {int(p): i for i, p in enumerate(self._pts)}
        k = 0
        self._wanted = {int(self._pts[i]) for i in wanted}
        try:
            for t, frame in self._decode_from(int(self._pts[wanted[0]]), int(self._pts[wanted[0]])):
                i = pts_to_idx.get(int(t))
                if i is None:
                    continue
                while k < len(wanted) and wanted[k] < i:
                    self._lost.add(wanted[k])  # that frame did not decode (damaged stream)
                    k += 1
                if k == len(wanted):
                    break
                if i == wanted[k]:
                    yield i, float(times[i]), self._to_array(frame, size)
                    k += 1
                    if k == len(wanted):
                        break
            else:
                self._lost.update(wanted[k:])
        finally:
            self._wanted = None
            self._frames = None

    def decode_all(self) -> dict | None:
        """Decode every frame without converting it (a full damage check, at decoding speed); returns :attr:`damage`."""
        pts_to_idx = {int(p): i for i, p in enumerate(self._pts)}
        seen: set[int] = set()
        try:
            for t, _ in self._decode_from(int(self._pts[0]), int(self._pts[0])):
                i = pts_to_idx.get(int(t))
                if i is not None:
                    seen.add(i)
        finally:
            self._frames = None
        self._lost.update(set(range(len(self._pts))) - seen)
        return self.damage

    # ---- lifetime ------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._close_container()
        if hasattr(self, "_worker_threads"):
            self._take_foreign_logs()  # closing joins the decoder's threads: their last words are in

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({self.path!r}, frames={len(self)})"


def probe(path: str | os.PathLike, decode: bool = False) -> VideoInfo:
    """Read a video's duration, frame rate, frame count, display size, codec and audio presence.

    Args:
        path: the video.
        decode: decode every frame (at decoding speed) so that ``damage`` covers errors inside the stream too;
            otherwise only the container is checked (frames missing, a stream cut short) and the first frame
            decoded.

    Raises:
        EmovidError: a subclass naming the file when it is missing, a special file, not a video, audio-only, in an
            unsupported codec, or holds no decodable frame. A damaged file that decodes in part is no error:
            see ``damage`` and ``warnings`` of the result.
    """
    with VideoReader(path, thread_type="AUTO" if decode else "NONE") as r:
        if decode:
            r.decode_all()
        return r.info


def read_frames(
    path: str | os.PathLike, indices: Sequence[int], size: tuple[int, int] | None = None, threads: int = 0
) -> np.ndarray:
    """Decode the given frames of ``path`` as ``uint8 [N, H, W, 3]`` RGB (see :meth:`VideoReader.get_frames`).

    Sparse access: no frame threading, which would be drained by every seek; frames in independent keyframe groups
    are decoded on two decoders at once when more than one core is free to use (``threads=1``: one decoder).
    """
    with VideoReader(path, threads=threads, thread_type="SLICE") as r:
        return r.get_frames(indices, size=size)


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
