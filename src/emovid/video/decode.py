"""Streaming video decoding on PyAV.

:class:`VideoReader` opens a file once, reads the container's packet index (a demux pass without decoding,
milliseconds for a short clip) and then serves:

* exact frames by index (:meth:`VideoReader.get_frames`), seeking to the keyframe before each wanted frame
  when that is cheaper than decoding forward, and converting only the frames asked for to RGB;
* a sequential stream of frames (:meth:`VideoReader.iter_frames`) and a stream sampled at a fixed rate
  (:meth:`VideoReader.iter_at_rate`) that hold one frame at a time, for hour-long inputs.

Frame *i* is the *i*-th frame in presentation order, so indices are exact for variable-frame-rate video too.
Frames come out upright: the container's display-matrix rotation is applied.

Damaged files are decoded as far as they go and the damage is reported, never hidden: a cut-off file serves the
frames it holds (``len(reader)``), and :attr:`VideoReader.damage` says what is missing or failed to decode so
far. Implausible header values (frame rate, duration, rotation) become :attr:`VideoInfo.warnings`.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emovid.errors import (
    EmptyVideoError,
    FrameIndexError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoError,
    UnsupportedCodecError,
    display_path,
)
from emovid.utils.paths import check_regular_file

_THREAD_TYPES = ("AUTO", "FRAME", "SLICE", "NONE")
_MISSING = ("raise", "nearest")

#: Frame rates outside ``(FPS_MIN, FPS_MAX]`` come from a damaged header (timescale), not from a camera.
FPS_MIN, FPS_MAX = 0.5, 1000.0
_MAX_MESSAGES = 3  # FFmpeg messages kept in a damage record, as examples


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


def damage_message(damage: dict | None, path: str | os.PathLike | None = None) -> str | None:
    """One line for a warning, e.g. ``clip.mp4: damaged video: file holds 42 of 60 declared frames; ...``.

    Args:
        damage: a :attr:`VideoReader.damage` record (``None`` gives ``None``).
        path: the file, put first when given.
    """
    if not damage:
        return None
    text = "damaged video: " + ("; ".join(damage.get("reasons") or []) or "damaged")
    return f"{display_path(path)}: {text}" if path is not None else text


def _check_path(path: str | os.PathLike) -> str:
    # Before anything opens it: opening a FIFO blocks forever, a device never ends.
    return check_regular_file(path, "file")  # "no such file", "is a FIFO, not a regular file": what callers match


def _open_container(path: str):
    import av

    try:
        with _LOG.local():  # the demuxer's complaint is in the error we raise; keep it off the terminal
            return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as e:
        raise NotAVideoError(
            f"cannot be opened as a video ({_ffmpeg_reason(e)}); it is not a video or it is corrupt/truncated", path
        ) from e


def _ffmpeg_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(":")[0].strip() if msg else type(e).__name__


class _FFmpegLog:
    """Keeps FFmpeg's log off the terminal and hands each reader the decoder errors it caused.

    PyAV drops FFmpeg's log by default, and with it the only trace of damage h264 conceals ("error while
    decoding MB ..."): the picture comes out patched and nothing raises. So once a reader exists, error-level
    messages are captured instead of dropped or printed:

    * on the thread that calls the demuxer or decoder, a :class:`av.logging.Capture` around each call catches
      them, so they belong to that reader exactly;
    * FFmpeg's own worker threads (frame threading) log into one process-wide capture, the *sink*. A reader whose
      decoder runs worker threads takes the sink's messages of its codec after each decode call. Two such readers
      decoding at once in one process (threads) cannot be told apart there and may swap these counts; frames the
      decoder flags as concealed are always counted per reader.

    An application that set up FFmpeg logging itself (``av.logging.set_level``) before the first reader keeps it:
    nothing is captured, and damage is counted from decode failures and frame flags only.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._ready = False
        self.owned = False
        self._sink: list | None = None
        self._sink_capture = None

    def install(self) -> None:
        if self._ready:
            return
        import av.logging

        with self._lock:
            if self._ready:
                return
            if av.logging.get_level() is None:
                av.logging.set_level(av.logging.ERROR)
                # Identical messages would be held back and summarised later, under another reader's call.
                av.logging.set_skip_repeated(False)
                self._sink_capture = av.logging.Capture(local=False)
                self._sink = self._sink_capture.__enter__()  # held for the process's life: the bottom of the stack
                self.owned = True
            self._ready = True

    def local(self):
        """Context manager giving the list of messages logged on this thread inside it."""
        if not self.owned:
            return contextlib.nullcontext([])
        import av.logging

        return av.logging.Capture()

    def take_foreign(self) -> list:
        """Messages FFmpeg's worker threads logged since the last call (removed from the sink)."""
        sink = self._sink
        if not sink:
            return []
        with self._lock:
            n = len(sink)
            got = sink[:n]
            del sink[:n]  # PyAV may append meanwhile; those stay for the next call
        return got


_LOG = _FFmpegLog()


def _display_rotation(frame) -> tuple[int, str | None]:
    """Rotation (degrees counter-clockwise, a multiple of 90) from a frame's display matrix, and a warning.

    Only the container's matrix is read here, never FFmpeg's angle: for a degenerate matrix FFmpeg's angle is NaN,
    which PyAV turns into ``-2**31`` (shown as 232°).
    """
    matrix = None
    for sd in getattr(frame, "side_data", ()) or ():
        if getattr(sd.type, "name", "") == "DISPLAYMATRIX" and len(bytes(sd)) >= 36:
            matrix = np.frombuffer(bytes(sd)[:36], dtype=np.int32)  # FFmpeg keeps it in native byte order
    if matrix is None:
        return 0, None
    a, b, c, d = (float(matrix[k]) / 65536.0 for k in (0, 1, 3, 4))  # 16.16 fixed point
    s0, s1 = math.hypot(a, c), math.hypot(b, d)
    if s0 < 1e-6 or s1 < 1e-6 or abs(a * d - b * c) < 1e-9:
        return 0, "the display matrix is degenerate (no rotation at all); frames are shown unrotated"
    deg = -math.degrees(math.atan2(b / s1, a / s0))  # FFmpeg's av_display_rotation_get convention
    k = round(deg / 90.0)
    if abs(deg - 90.0 * k) > 1.0:
        return 0, f"the display matrix rotates by {deg % 360:.0f}°, not a multiple of 90°; frames are shown unrotated"
    return int(90 * k) % 360, None


_DURATION_TAG = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$")


def _tag_seconds(value: str | None) -> float | None:
    """Seconds of a Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``)."""
    m = _DURATION_TAG.match(value or "")
    if not m:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


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
        try:
            self._init_stream(threads, thread_type.upper())
        except BaseException:
            self._close_container()
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
        self._codec_name = s.codec_context.name
        # Only then can the decoder log from threads of its own (see _FFmpegLog).
        self._worker_threads = thread_type != "NONE" and threads != 1
        self.frames_decoded = 0  # frames the decoder produced (sparse sampling keeps this far below len(self))
        # Damage met while decoding, as sets so that decoding a stretch twice does not count it twice.
        self._failed_pts: set = set()  # packets whose decode raised
        self._concealed_pts: set = set()  # frames the decoder flagged as patched up (error concealment)
        self._error_keys: set = set()  # (packet, message) of FFmpeg's error messages while decoding
        self._messages: list[str] = []  # the first few of them, as examples
        self._lost: set[int] = set()  # frame indices decoding passed over without producing them
        self._count_messages = True  # FFmpeg's messages are damage (not seek artefacts): see _decode_from
        self._scan_packets()
        if thread_type != "NONE":
            s.thread_type = thread_type
            s.thread_count = threads
        self._rotation = 0
        self._rotation_warning: str | None = None
        self._wanted: set[int] | None = None  # pts of frames to decode in full; None = every frame
        self._frames: Iterator | None = None  # live decode generator
        self._pos_pts: int | None = None  # pts of the last frame the generator produced
        self._peek_first_frame()

    def _scan_packets(self) -> None:
        """Demux every video packet once (no decoding) for exact frame timestamps and keyframe positions."""
        import av

        entries: list[tuple[int, bool, bool, int, int]] = []  # pts, keyframe, flagged corrupt, end offset, duration
        error = None
        with _LOG.local():  # the demuxer's "partial file" is judged below, not printed
            try:
                for p in self._container.demux(self._stream):
                    if p.size == 0:
                        continue
                    t = p.pts if p.pts is not None else p.dts
                    if t is None:
                        continue
                    end = p.pos + p.size if p.pos is not None and p.pos >= 0 else -1
                    entries.append((t, p.is_keyframe, p.is_corrupt, end, p.duration or 0))
            except av.FFmpegError as e:
                error = _ffmpeg_reason(e)  # damaged tail; frames before it are still usable
        size = os.path.getsize(self.path)
        # A file cut inside a packet still demuxes that packet, short and flagged corrupt: it holds no frame,
        # and feeding it to a frame-threaded decoder also loses the frames queued before it.
        self._skip_pts: set[int] = set()
        while entries and (entries[-1][2] or entries[-1][3] > size):
            self._skip_pts.add(entries.pop()[0])
        if not entries:
            declared = int(self._stream.frames or 0)
            if self._skip_pts or error or declared:
                held = f"none of the {declared} frames it declares" if declared else "no complete frame"
                raise EmptyVideoError(f"holds {held}: the file is cut off or damaged; get a complete copy", self.path)
            raise EmptyVideoError("the video stream contains no frames", self.path)
        pts = sorted(e[0] for e in entries)
        key_pts = sorted(e[0] for e in entries if e[1])
        self._pts = np.asarray(pts, dtype=np.int64)
        self._key_pts = key_pts or [pts[0]]
        self._scan_complete = error is None
        self._scan_error = error
        self._data_to_eof = max(e[3] for e in entries) >= size  # the last frame's bytes run to the end of the file
        self._declared_frames = int(self._stream.frames or 0)
        self._last_duration = max(entries)[4]  # how long the last frame shows, when the container says

    def _peek_first_frame(self) -> None:
        """Decode the first frame: proves the stream decodes and reads the display rotation."""
        for _, frame in self._decode_from(int(self._pts[0]), int(self._pts[0])):
            self._rotation, self._rotation_warning = _display_rotation(frame)
            return
        raise EmptyVideoError("no frame of the video stream could be decoded; the file is damaged", self.path)

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

    def _declared_duration(self) -> float | None:
        """The video stream's duration as its header states it (not measured), if it states one."""
        s = self._stream
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        tag = _tag_seconds((s.metadata or {}).get("DURATION"))  # Matroska keeps it in a per-track tag
        if tag:
            return tag
        c = self._container
        if len(c.streams) == 1 and c.duration:  # the container's is the longest stream's: only then ours
            return c.duration / 1e6
        return None

    def _ended_early(self) -> str | None:
        """Why the stream looks cut short (a phrase for ``reasons``), or ``None``."""
        n = len(self._pts)
        if self._scan_error:
            return f"the container breaks off after {n} frames ({self._scan_error})"
        if self._skip_pts:
            return "the stream is cut off inside a packet"
        if self._declared_frames > n and self._data_to_eof:
            return "the stream is cut off where the file ends"
        if not self._declared_frames:  # no frame count to compare (Matroska, WebM): compare durations
            declared = self._declared_duration()
            fps, duration = self._timing()
            if self._last_duration > 0:  # a last frame shown long (variable frame rate) is no missing tail
                duration = float(self._pts[-1] - self._pts[0] + self._last_duration) * self._tb
            if declared and fps > 0 and declared - duration > max(0.25, 2.0 / fps, 0.05 * declared):
                return (
                    f"the stream ends early: its frames span {duration:.2f} s of the {declared:.2f} s the header "
                    "declares"
                )
        return None

    def _warnings(self, fps: float, duration: float) -> list[str]:
        out = [self._rotation_warning] if self._rotation_warning else []
        if len(self._pts) > 1 and not FPS_MIN < fps <= FPS_MAX:
            out.append(
                f"frame rate {fps:.4g} fps is implausible (outside {FPS_MIN:g}-{FPS_MAX:g} fps): "
                "the header's timescale or timestamps are probably damaged"
            )
        declared = self._declared_duration()
        mismatch = declared and abs(duration - declared) > max(1.0, 0.25 * max(duration, declared))
        # A cut file is shorter than declared for a reason its damage already gives.
        if mismatch and (duration > declared or self._ended_early() is None):
            out.append(f"the frames span {duration:.3f} s but the header declares {declared:.3f} s")
        return out

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

    @property
    def damage(self) -> dict | None:
        """What is wrong with the file so far, or ``None`` while nothing is.

        The container-level part (frames missing against the declared count, a stream that ends early) is known
        on opening; decode errors count as far as frames have been decoded, so read this after processing.

        Returns:
            ``None``, or a JSON-ready dict: ``declared_frames`` (the header's frame count, ``None`` when it
            states none), ``frames`` (frames the file holds, ``len(reader)``), ``stream_ended_early``,
            ``decode_errors`` (packets whose decode failed + FFmpeg's error messages while decoding; messages are
            counted only while decoding runs on from the first keyframe, as seeking into the middle makes FFmpeg
            complain about sound files too),
            ``failed_packets``, ``concealed_frames`` (frames the decoder patched up), ``lost_frames`` (frames
            decoding passed over), ``messages`` (the first few FFmpeg error messages) and ``reasons`` (one
            phrase each, for :func:`damage_message`).
        """
        self._take_foreign_logs()
        n = len(self._pts)
        declared = self._declared_frames or None
        ended = self._ended_early()
        failed, concealed, lost = len(self._failed_pts), len(self._concealed_pts), len(self._lost)
        errors = failed + len(self._error_keys)
        short = declared is not None and declared > n
        if not (short or ended or errors or concealed or lost):
            return None
        reasons = []
        if short:
            reasons.append(f"file holds {n} of {declared} declared frames")
        if ended:
            reasons.append(ended)
        if failed:
            reasons.append(f"{_plural(failed, 'packet')} failed to decode")
        if self._error_keys:
            extra = f" ({_plural(concealed, 'frame')} concealed)" if concealed else ""
            reasons.append(f"the decoder reported {_plural(len(self._error_keys), 'error')}{extra}")
        elif concealed:
            reasons.append(f"{_plural(concealed, 'frame')} decoded with concealed errors")
        if lost:
            reasons.append(f"{_plural(lost, 'frame')} could not be decoded")
        return {
            "declared_frames": declared,
            "frames": n,
            "stream_ended_early": ended is not None,
            "decode_errors": errors,
            "failed_packets": failed,
            "concealed_frames": concealed,
            "lost_frames": lost,
            "messages": list(self._messages),
            "reasons": reasons,
        }

    @property
    def damage_summary(self) -> str | None:
        """:func:`damage_message` of :attr:`damage` for this file, or ``None`` while the file is sound."""
        return damage_message(self.damage, self.path)

    @property
    def decode_errors(self) -> int:
        """Packets that failed to decode plus FFmpeg's error messages while decoding (see :attr:`damage`)."""
        self._take_foreign_logs()
        return len(self._failed_pts) + len(self._error_keys)

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def frame_times(self) -> np.ndarray:
        """Presentation time in seconds of every frame, relative to the first."""
        return (self._pts - self._pts[0]).astype(np.float64) * self._tb

    # ---- damage bookkeeping --------------------------------------------------------------------------------

    def _note_messages(self, logs: Sequence, key) -> None:
        import av.logging

        if not self._count_messages:
            return
        for level, name, message in logs:
            if level > av.logging.ERROR:
                continue
            text = f"{name}: {message.strip()}" if name else message.strip()
            self._error_keys.add((key, text))
            if len(self._messages) < _MAX_MESSAGES and text not in self._messages:
                self._messages.append(text)

    def _take_foreign_logs(self) -> None:
        if not self._worker_threads:
            return  # its decoder logs only on the calling thread, caught there
        mine = [m for m in _LOG.take_foreign() if m[1] == self._codec_name]
        if mine:
            self._note_messages(mine, None)  # no packet to tie them to: the message text tells them apart

    # ---- decoding core -------------------------------------------------------------------------------------

    def _raw_frames(self) -> Iterator:
        """Decoded frames from the current demux position; damaged packets are skipped like FFmpeg does.

        While ``self._wanted`` is set, packets of frames nobody asked for are decoded with
        ``skip_frame=NONREF``: the decoder drops them when no other frame references them (most B-frames),
        which saves a quarter to a half of the work of sparse sampling and never changes a wanted frame.

        Every failure is booked for :attr:`damage`: packets whose decode raises, frames flagged as concealed, and
        FFmpeg's error messages. No capture is held across a ``yield``: captures stack per thread, and another
        reader's generator may run between two frames.
        """
        import av

        ctx = self._stream.codec_context
        skipping = None  # unknown: an earlier pass may have left NONREF set on the shared codec context
        packets = self._container.demux(self._stream)
        while True:
            broke = False
            with _LOG.local():  # the parser repeats what the scan already judged (a cut packet)
                try:
                    packet = next(packets, None)
                except av.FFmpegError:
                    packet, broke = None, True
            if broke:
                # The container breaks off here (the scan saw it too). PyAV's closing flush packet will not come,
                # so drain the decoder of the frames it still holds.
                yield from self._decode_packet(None, ctx)
                return
            if packet is None:
                return
            if packet.size and packet.pts in self._skip_pts:
                continue
            wanted = self._wanted
            skip = wanted is not None and packet.pts not in wanted
            if skip != skipping:
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            yield from self._decode_packet(packet, ctx)

    def _decode_packet(self, packet, ctx) -> list:
        """Decode one packet (``None``: flush the decoder) and book what went wrong."""
        import av

        key = None if packet is None else (packet.pts if packet.pts is not None else packet.dts)
        with _LOG.local() as logs:
            try:
                frames = ctx.decode(None) if packet is None else packet.decode()
            except av.FFmpegError:
                frames = None
        if frames is None:
            self._failed_pts.add(key)  # its messages only explain this failure: not counted twice
            for _, name, message in logs[: max(0, _MAX_MESSAGES - len(self._messages))]:
                self._messages.append(f"{name}: {message.strip()}" if name else message.strip())
            frames = []
        else:
            self._note_messages(logs, key)
        self._take_foreign_logs()
        for f in frames:
            self.frames_decoded += 1
            if f.is_corrupt:
                self._concealed_pts.add(f.pts)
        return frames

    def _decode_from(self, seek_pts: int, first_wanted: int) -> Iterator[tuple[int, object]]:
        """Seek to the keyframe at or before ``seek_pts`` and yield ``(pts, frame)`` from ``first_wanted`` on."""
        self._take_foreign_logs()  # what the decoder said so far belongs to the decoding before this seek
        with _LOG.local():
            self._container.seek(seek_pts, stream=self._stream, backward=True, any_frame=False)
        self._take_foreign_logs()  # seeking flushed the decoder: its threads' last messages are in
        # Past a seek into the middle, FFmpeg complains about references from before the seek point (open GOPs)
        # even in sound files: its messages count only while decoding runs from the first keyframe on. Failed
        # packets and frames flagged as concealed count everywhere.
        self._count_messages = len(self._key_pts) < 2 or seek_pts < self._key_pts[1]
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
        try:
            for i in map(int, wanted):
                if missing == "nearest" and i in self._lost:
                    continue  # known not to decode: spare the retry from the first frame
                try:
                    out[i] = self._to_array(self._seek_or_continue(int(self._pts[i]), i), size)
                except TruncatedVideoError:
                    self._lost.add(i)
                    if missing == "raise":
                        raise
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

    def _close_container(self) -> None:
        self._frames = None
        with _LOG.local():
            self._container.close()

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

    Sparse access: no frame threading, which would be drained by every seek.
    """
    with VideoReader(path, threads=threads, thread_type="SLICE") as r:
        return r.get_frames(indices, size=size)


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
