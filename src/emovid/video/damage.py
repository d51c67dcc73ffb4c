"""What is wrong with a video file: the damage record, its one-line message, and header plausibility checks.

:class:`_DamageTracking` is the part of :class:`~emovid.video.decode.VideoReader` that books decode failures and
FFmpeg's error messages, judges whether the stream ends early, and turns implausible header values (frame rate,
duration, display matrix) into warnings. It reads the state the reader's packet scan and decoder set up
(:class:`~emovid.video.stream._StreamDecoder`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import numpy as np

from emovid.errors import display_path
from emovid.video.ffmpeg_log import _LOG

#: Frame rates outside ``(FPS_MIN, FPS_MAX]`` come from a damaged header (timescale), not from a camera.
FPS_MIN, FPS_MAX = 0.5, 1000.0
_MAX_MESSAGES = 3  # FFmpeg messages kept in a damage record, as examples


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


class _DamageTracking:
    """Damage bookkeeping and header checks of a :class:`~emovid.video.decode.VideoReader` (a mixin).

    Expects what :meth:`~emovid.video.stream._StreamDecoder._init_stream` sets: the packet index (``_pts``,
    ``_scan_error``, ``_skip_pts``, ``_declared_frames``, ``_data_to_eof``, ``_last_duration``), the damage sets
    (``_failed_pts``, ``_concealed_pts``, ``_error_keys``, ``_messages``, ``_lost``) and ``_timing()``.
    """

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
