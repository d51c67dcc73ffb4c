"""Streaming video decoding on PyAV.

:class:`VideoReader` opens a file once, reads the container's packet index (a demux pass without decoding,
milliseconds for a short clip) and then serves:

* exact frames by index (:meth:`VideoReader.get_frames`), seeking to the keyframe before each wanted frame
  when that is cheaper than decoding forward, and converting only the frames asked for to RGB;
* a sequential stream of frames (:meth:`VideoReader.iter_frames`) and a stream sampled at a fixed rate
  (:meth:`VideoReader.iter_at_rate`) that hold one frame at a time, for hour-long inputs.

Frame *i* is the *i*-th frame in presentation order, so indices are exact for variable-frame-rate video too.
Frames come out upright: the container's display-matrix rotation is applied.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emovid.errors import (
    EmptyVideoError,
    FrameIndexError,
    InputNotFoundError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoError,
    UnsupportedCodecError,
)

_THREAD_TYPES = ("AUTO", "FRAME", "SLICE", "NONE")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video.

    Attributes:
        path: the file.
        duration: seconds from the first frame's start to the last frame's end.
        fps: average frame rate (frames / duration).
        variable_fps: whether frame durations vary by more than timestamp rounding.
        num_frames: number of frames.
        num_frames_exact: True when counted from the packet index (always, unless the scan was cut short).
        truncated: the container declares more frames than the file holds (a cut-off download or copy).
        width: display width, after rotation.
        height: display height, after rotation.
        rotation: degrees counter-clockwise the coded picture is rotated for display (FFmpeg's display matrix).
        codec: decoder name, e.g. ``h264``.
        has_audio: whether the container holds an audio stream.
        container: the demuxer name, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``.
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

    def to_dict(self) -> dict:
        return asdict(self)


def _check_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputNotFoundError(path)
    if os.path.isdir(path):
        raise NotAVideoError("is a folder, not a video file", path)
    return path


def _open_container(path: str):
    import av

    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as e:
        raise NotAVideoError(
            f"cannot be opened as a video ({_ffmpeg_reason(e)}); it is not a video or it is corrupt/truncated", path
        ) from e


def _ffmpeg_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(":")[0].strip() if msg else type(e).__name__


class VideoReader:
    """Random access and streaming over one video file.

    Args:
        path: video file.
        threads: decoder threads; 0 lets FFmpeg choose.
        thread_type: FFmpeg threading: ``AUTO`` (frame + slice), ``FRAME``, ``SLICE`` or ``NONE``. Frame threading
            speeds up sequential streaming (:meth:`iter_frames`, :meth:`iter_at_rate`) but every seek drains its
            pipeline, so sparse :meth:`get_frames` is faster with ``SLICE`` (measured in ``bench/decode.py``).

    Raises:
        InputNotFoundError: the file does not exist.
        NotAVideoError: FFmpeg cannot open it.
        NoVideoStreamError: it has no video stream (audio-only).
        UnsupportedCodecError: no decoder for its codec in this FFmpeg build.
        EmptyVideoError: the stream holds no frame.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0, thread_type: str = "AUTO"):
        self.path = _check_path(path)
        if thread_type.upper() not in _THREAD_TYPES:
            raise ValueError(f"thread_type must be one of {_THREAD_TYPES}")
        self._container = _open_container(self.path)
        try:
            self._init_stream(threads, thread_type.upper())
        except BaseException:
            self._container.close()
            raise

    # ---- set-up --------------------------------------------------------------------------------------------

    def _init_stream(self, threads: int, thread_type: str) -> None:
        c = self._container
        if not c.streams.video:
            what = "an audio-only file" if c.streams.audio else "a file without a video stream"
            raise NoVideoStreamError(f"is {what}; give a video file", self.path)
        s = c.streams.video[0]
        if s.codec_context is None or s.codec_context.codec is None:
            raise UnsupportedCodecError(
                "its video codec has no decoder in this FFmpeg build; re-encode to H.264", self.path
            )
        self._stream = s
        self._tb = float(s.time_base) if s.time_base else 1.0
        self._has_audio = bool(c.streams.audio)
        self._scan_packets()
        if thread_type != "NONE":
            s.thread_type = thread_type
            s.thread_count = threads
        self._rotation = 0
        self.frames_decoded = 0  # frames the decoder produced (sparse sampling keeps this far below len(self))
        self.decode_errors = 0  # damaged packets skipped
        self._wanted: set[int] | None = None  # pts of frames to decode in full; None = every frame
        self._frames: Iterator | None = None  # live decode generator
        self._pos_pts: int | None = None  # pts of the last frame the generator produced
        self._peek_first_frame()

    def _scan_packets(self) -> None:
        """Demux every video packet once (no decoding) for exact frame timestamps and keyframe positions."""
        import av

        pts: list[int] = []
        key_pts: list[int] = []
        complete = True
        try:
            for p in self._container.demux(self._stream):
                if p.size == 0:
                    continue
                t = p.pts if p.pts is not None else p.dts
                if t is None:
                    continue
                pts.append(t)
                if p.is_keyframe:
                    key_pts.append(t)
        except av.FFmpegError:
            complete = False  # damaged tail; frames before it are still usable
        if not pts:
            raise EmptyVideoError("the video stream contains no frames", self.path)
        pts.sort()
        key_pts.sort()
        self._pts = np.asarray(pts, dtype=np.int64)
        self._key_pts = key_pts or [pts[0]]
        self._scan_complete = complete
        self._declared_frames = int(self._stream.frames or 0)

    def _peek_first_frame(self) -> None:
        """Decode the first frame: proves the stream decodes and reads the display rotation."""
        for _, frame in self._decode_from(int(self._pts[0]), int(self._pts[0])):
            self._rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
            return
        raise EmptyVideoError("no frame of the video stream could be decoded; the file is damaged", self.path)

    # ---- metadata ------------------------------------------------------------------------------------------

    @property
    def info(self) -> VideoInfo:
        s = self._stream
        pts = self._pts
        n = len(pts)
        deltas = np.diff(pts)
        if n > 1:
            span = float(pts[-1] - pts[0]) * self._tb
            fps = (n - 1) / span if span > 0 else float(s.average_rate or 0)
        else:
            fps = float(s.average_rate or s.guessed_rate or 0.0)
        if not fps or not math.isfinite(fps):
            fps = 0.0
        duration = n / fps if fps > 0 else 0.0
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
            truncated=self._declared_frames > n or not self._scan_complete,
            width=int(w),
            height=int(h),
            rotation=self._rotation,
            codec=s.codec_context.name,
            has_audio=self._has_audio,
            container=self._container.format.name,
        )

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def frame_times(self) -> np.ndarray:
        """Presentation time in seconds of every frame, relative to the first."""
        return (self._pts - self._pts[0]).astype(np.float64) * self._tb

    # ---- decoding core -------------------------------------------------------------------------------------

    def _raw_frames(self) -> Iterator:
        """Decoded frames from the current demux position; damaged packets are skipped like FFmpeg does.

        While ``self._wanted`` is set, packets of frames nobody asked for are decoded with
        ``skip_frame=NONREF``: the decoder drops them when no other frame references them (most B-frames),
        which saves a quarter to a half of the work of sparse sampling and never changes a wanted frame.
        """
        import av

        ctx = self._stream.codec_context
        skipping = False
        for packet in self._container.demux(self._stream):
            wanted = self._wanted
            if wanted is not None:
                skip = packet.pts not in wanted
                if skip != skipping:
                    ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
            elif skipping:
                ctx.skip_frame, skipping = "DEFAULT", False
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.decode_errors += 1
                continue
            for f in frames:
                self.frames_decoded += 1
                yield f

    def _decode_from(self, seek_pts: int, first_wanted: int) -> Iterator[tuple[int, object]]:
        """Seek to the keyframe at or before ``seek_pts`` and yield ``(pts, frame)`` from ``first_wanted`` on."""
        self._container.seek(seek_pts, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._raw_frames()
        self._pos_pts = None
        return self._continue(first_wanted)

    def _continue(self, first_wanted: int) -> Iterator[tuple[int, object]]:
        assert self._frames is not None
        for frame in self._frames:
            t = frame.pts if frame.pts is not None else frame.dts
            if t is None:
                continue
            self._pos_pts = t
            if t >= first_wanted:
                yield t, frame

    def _to_array(self, frame, size: tuple[int, int] | None) -> np.ndarray:
        rot_k = self._rotation // 90
        if size is not None:
            h, w = size
            if rot_k % 2:
                h, w = w, h
            frame = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
            arr = frame.to_ndarray()
        else:
            arr = frame.to_ndarray(format="rgb24")
        if rot_k:
            arr = np.ascontiguousarray(np.rot90(arr, k=rot_k))
        return arr

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self._pts)
        if idx.size and idx.max() >= n and self._declared_frames > n:
            raise TruncatedVideoError(
                f"frame {int(idx.max())} is missing: the file is truncated (it declares {self._declared_frames} "
                f"frames, holds {n}); get a complete copy",
                self.path,
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise FrameIndexError(
                f"frame indices must lie in [0, {n}); got {int(idx.min())}..{int(idx.max())}", self.path
            )
        return np.where(idx < 0, idx + n, idx)

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Decode the frames at ``indices`` (presentation order, any order, repeats allowed).

        Args:
            indices: frame indices; negative ones count from the end.
            size: optional ``(height, width)`` to resize to while converting (FFmpeg's area filter), which is
                much cheaper than resizing full-size frames afterwards.

        Returns:
            ``uint8`` array ``[N, H, W, 3]`` in RGB, frames in the order of ``indices``.

        Raises:
            FrameIndexError: an index lies outside the video.
            TruncatedVideoError: a wanted frame cannot be decoded because the stream ends or breaks early.
        """
        idx = self._check_indices(indices)
        if idx.size == 0:
            h, w = size if size is not None else (self.info.height, self.info.width)
            return np.zeros((0, h, w, 3), np.uint8)
        wanted = np.unique(idx)
        out: dict[int, np.ndarray] = {}
        self._wanted = {int(p) for p in self._pts[wanted]}
        try:
            for i in wanted:
                target = int(self._pts[i])
                out[int(i)] = self._to_array(self._seek_or_continue(target, int(i)), size)
        finally:
            self._wanted = None
            self._frames = None  # the decoder state was built with skipping; start clean next time
        return np.stack([out[int(i)] for i in idx])

    def _seek_or_continue(self, target: int, index: int):
        k = bisect.bisect_right(self._key_pts, target) - 1
        key = self._key_pts[max(k, 0)]
        pos = self._pos_pts
        gen = None
        if self._frames is not None and pos is not None and key <= pos < target:
            gen = self._continue(target)  # already inside the keyframe's group: decoding on is cheapest
        for attempt in range(2):
            if gen is None:
                seek_to = key if attempt == 0 else int(self._pts[0])
                gen = self._decode_from(seek_to, target)
            for t, frame in gen:
                if t == target:
                    return frame
                if t > target:
                    break  # landed past it (open GOP / imprecise seek): retry from the very start
            else:
                break
            gen = None
        n = len(self._pts)
        raise TruncatedVideoError(
            f"frame {index} of {n} cannot be decoded: the stream ends early or is damaged; re-encode or skip it",
            self.path,
        )

    def iter_frames(
        self, start: int = 0, stop: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        """Stream frames ``start <= i < stop`` in order as ``(index, time_s, rgb_array)``; one frame in memory.

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
        for t, frame in self._decode_from(int(self._pts[start]), int(self._pts[start])):
            i = pts_to_idx.get(int(t))
            if i is None:
                continue
            if i >= stop:
                break
            got += 1
            yield i, float(times[i]), self._to_array(frame, size)
        if got == 0:
            raise TruncatedVideoError("no frame could be decoded; the file is damaged", self.path)

    def iter_at_rate(self, fps: float, size: tuple[int, int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """Stream frames sampled at ``fps`` (the frame showing at each sample time), as ``(index, time_s, rgb)``.

        Only the sampled frames are converted to RGB; memory stays at one frame whatever the video's length.
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
                    k += 1  # that frame did not decode (damaged stream): its sample is skipped, not invented
                if k == len(wanted):
                    break
                if i == wanted[k]:
                    yield i, float(times[i]), self._to_array(frame, size)
                    k += 1
                    if k == len(wanted):
                        break
        finally:
            self._wanted = None
            self._frames = None

    # ---- lifetime ------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._frames = None
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({self.path!r}, frames={len(self)})"


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's duration, frame rate, frame count, display size, codec and audio presence.

    Raises:
        EmovidError: a subclass naming the file when it is missing, not a video, audio-only, in an unsupported
            codec, or holds no decodable frame.
    """
    with VideoReader(path, thread_type="NONE") as r:
        return r.info


def read_frames(
    path: str | os.PathLike, indices: Sequence[int], size: tuple[int, int] | None = None, threads: int = 0
) -> np.ndarray:
    """Decode the given frames of ``path`` as ``uint8 [N, H, W, 3]`` RGB (see :meth:`VideoReader.get_frames`).

    Sparse access: no frame threading, which would be drained by every seek.
    """
    with VideoReader(path, threads=threads, thread_type="SLICE") as r:
        return r.get_frames(indices, size=size)


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
