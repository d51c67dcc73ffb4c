"""The packet layer of :class:`~emovid.video.decode.VideoReader`: opening, the packet index, and decoding.

:class:`_StreamDecoder` opens the video stream, demuxes every packet once for exact frame timestamps and keyframe
positions, and decodes from a keyframe on, booking every failure for the damage record
(:class:`~emovid.video.damage._DamageTracking`).
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections.abc import Iterator

import numpy as np

from emovid.errors import (
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    TruncatedVideoError,
    UnsupportedCodecError,
)
from emovid.utils.paths import check_regular_file
from emovid.video.damage import _MAX_MESSAGES, _DamageTracking, _display_rotation
from emovid.video.ffmpeg_log import _LOG, _ffmpeg_reason


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


class _StreamDecoder(_DamageTracking):
    """Set-up, decoding core and seeking of :class:`~emovid.video.decode.VideoReader` (which opens the container)."""

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
        self._ctx = s.codec_context  # the decoder (a companion has its own: see _companion)
        self._reformatter = None  # one colour converter per decoder, made on first use (see _to_array)
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

        entries: list[tuple] = []  # pts, keyframe, flagged corrupt, end offset, duration, dts
        # The packets themselves, in demux order, kept while they are small: decoding then feeds them from memory
        # (no second demux, no seek, and a second decoder needs no second demuxer). None past the cap.
        packets: list | None = []
        held = 0
        key_count: dict[int, int] = {}  # keyframe pts -> packets before it in decoding order (frames shown before it)
        count = 0
        error = None
        with _LOG.local():  # the demuxer's "partial file" is judged below, not printed
            try:
                for p in self._container.demux(self._stream):
                    if p.size == 0:
                        continue
                    count += 1
                    if p.is_keyframe and p.pts is not None:
                        key_count.setdefault(int(p.pts), count - 1)
                    if packets is not None:
                        held += p.size
                        if held > PACKET_CACHE_BYTES:
                            packets = None
                        else:
                            packets.append(p)
                    t = p.pts if p.pts is not None else p.dts
                    if t is None:
                        continue
                    end = p.pos + p.size if p.pos is not None and p.pos >= 0 else -1
                    entries.append((t, p.is_keyframe, p.is_corrupt, end, p.duration or 0, p.dts))
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
        # Where to seek the demuxer for each keyframe: MP4 finds keyframes by decoding time, so seeking to a
        # keyframe's presentation time lands on a later keyframe when frames are reordered (HEVC, B-pyramids);
        # its decoding time lands on it (or, in a container indexed by presentation time, one group earlier).
        self._key_seek = {e[0]: min(e[0], e[5]) for e in entries if e[1] and e[5] is not None}
        self._scan_complete = error is None
        self._scan_error = error
        self._data_to_eof = max(e[3] for e in entries) >= size  # the last frame's bytes run to the end of the file
        self._declared_frames = int(self._stream.frames or 0)
        self._last_duration = max(entries)[4]  # how long the last frame shows, when the container says
        self._packets = packets
        # Where decoding from each keyframe starts in ``packets``: every packet holds one frame, so in a stream of
        # closed keyframe groups the packets before a keyframe are also the frames shown before it (used below).
        self._key_pos = key_count
        if packets is not None and any(k not in key_count for k in self._key_pts):
            self._packets = None  # a keyframe known only by its dts: seek in the file instead
        # AVI has no presentation times: its packets are numbered in decoding order, and a decoder reordering
        # B-frames tags its output with those numbers out of order. There the frames are taken in the order the
        # decoder puts them out (display order), counted from the keyframe decoding starts at. (A packet that fails
        # to decode then shifts the count in its group; the damage record says so.)
        self._output_order = self._container.format.name == "avi" and all(k in key_count for k in self._key_pts)

    def _peek_first_frame(self) -> None:
        """Decode the first frame: proves the stream decodes and reads the display rotation."""
        for _, frame in self._decode_from(int(self._pts[0]), int(self._pts[0])):
            self._rotation, self._rotation_warning = _display_rotation(frame)
            return
        raise EmptyVideoError("no frame of the video stream could be decoded; the file is damaged", self.path)

    # ---- decoding core -------------------------------------------------------------------------------------

    def _raw_frames(self, cached: Iterator | None = None, shown: int = 0, lead=None) -> Iterator:
        """Decoded frames from the current demux position (or from the packets ``cached`` yields, then the
        decoder is drained); damaged packets are skipped like FFmpeg does. For a stream indexed in output order
        (AVI), the frames are re-tagged with the timestamps of frames ``shown``, ``shown + 1``, ... in turn.
        ``lead``: a packet already demuxed, decoded first.

        While ``self._wanted`` is set, packets of frames nobody asked for are decoded with
        ``skip_frame=NONREF``: the decoder drops them when no other frame references them (most B-frames),
        which saves a quarter to a half of the work of sparse sampling and never changes a wanted frame.

        Every failure is booked for :attr:`damage`: packets whose decode raises, frames flagged as concealed, and
        FFmpeg's error messages. No capture is held across a ``yield``: captures stack per thread, and another
        reader's generator may run between two frames.
        """
        import av

        ctx = self._ctx
        skipping = None  # unknown: an earlier pass may have left NONREF set on the shared codec context
        from_memory = cached is not None
        packets = cached if from_memory else self._container.demux(self._stream)
        if lead is not None:
            packets = itertools.chain([lead], packets)
        while True:
            broke = False
            with _LOG.local():  # the parser repeats what the scan already judged (a cut packet)
                try:
                    packet = next(packets, None)
                except av.FFmpegError:
                    packet, broke = None, True
            if broke or (packet is None and from_memory):
                # The container breaks off here (the scan saw it too), or the kept packets are used up. PyAV's
                # closing flush packet will not come, so drain the decoder of the frames it still holds.
                frames = self._decode_packet(None, ctx)
                if self._output_order:
                    self._retag(frames, shown)
                yield from frames
                return
            if packet is None:
                return
            if packet.size and packet.pts in self._skip_pts:
                continue
            wanted = self._wanted
            # (no skipping where frames are counted: a skipped frame would shift the count)
            skip = wanted is not None and packet.pts not in wanted and not self._output_order
            if skip != skipping:
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            frames = self._decode_packet(packet, ctx)
            if self._output_order:
                shown = self._retag(frames, shown)
            yield from frames

    def _land_on(self, key: int) -> tuple[int, object]:
        """After a seek, demux up to the packet of keyframe ``key``; if the seek went past it, start again from the
        first keyframe. Returns the keyframe decoding starts at and its packet (``None`` when none is found)."""
        for target in (key, self._key_pts[0]):
            for p in self._container.demux(self._stream):
                if p.size and p.pts == target:
                    return target, p
                if p.size and p.pts is not None and p.pts > target:
                    break  # landed past it
            with _LOG.local():
                first = self._key_pts[0]
                self._container.seek(self._key_seek.get(first, first), stream=self._stream, backward=True)
        return self._key_pts[0], None

    def _retag(self, frames: list, shown: int) -> int:
        """Tag ``frames`` (output order) with the timestamps of frames ``shown``, ``shown + 1``, ...; the next one."""
        for f in frames:
            if shown < len(self._pts):
                f.pts = int(self._pts[shown])
            shown += 1
        return shown

    def _decode_packet(self, packet, ctx) -> list:
        """Decode one packet (``None``: flush the decoder) and book what went wrong."""
        import av

        key = None if packet is None else (packet.pts if packet.pts is not None else packet.dts)
        with _LOG.local() as logs:
            try:
                frames = ctx.decode(packet)
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
        key = self._key_pts[max(bisect.bisect_right(self._key_pts, seek_pts) - 1, 0)]  # decoding starts there
        cached = lead = None
        if self._packets is not None:
            cached = _iter_from(self._packets, self._key_pos[key])
            self._ctx.flush_buffers()  # what seeking the container does
        else:
            with _LOG.local():
                self._container.seek(self._key_seek.get(key, key), stream=self._stream, backward=True, any_frame=False)
            if self._output_order:  # frames are counted from the keyframe: decoding must start exactly there
                key, lead = self._land_on(key)
        self._take_foreign_logs()  # seeking flushed the decoder: its threads' last messages are in
        # Past a seek into the middle, FFmpeg complains about references from before the seek point (open GOPs)
        # even in sound files: its messages count only while decoding runs from the first keyframe on. Failed
        # packets and frames flagged as concealed count everywhere.
        self._count_messages = len(self._key_pts) < 2 or seek_pts < self._key_pts[1]
        self._frames = self._raw_frames(cached, self._key_pos.get(key, 0), lead)
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
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            # One converter for every frame: a frame's own makes a new swscale context (and thread pool) each time,
            # ~0.3 ms of a 0.05 ms conversion at 320x256.
            self._reformatter = VideoReformatter()
        threads = 1 if frame.width * frame.height <= _ONE_THREAD_PIXELS else 0
        if size is not None:
            h, w = size
            if rot_k % 2:
                h, w = w, h
            arr = self._reformatter.reformat(
                frame, width=w, height=h, format="rgb24", interpolation="AREA", threads=threads
            ).to_ndarray()
        else:
            arr = self._reformatter.reformat(frame, format="rgb24", threads=threads).to_ndarray()
        if rot_k:
            arr = np.ascontiguousarray(np.rot90(arr, k=rot_k))
        return arr

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

    def _close_container(self) -> None:
        self._frames = None
        self._packets = None
        if self._container is None:
            return  # a companion fed from the kept packets
        with _LOG.local():
            self._container.close()

    # ---- a second demuxer for independent keyframe groups ---------------------------------------------------

    def _group_plan(self, wanted: np.ndarray) -> tuple[list[int], list[int]] | None:
        """Split sorted wanted frame indices into two runs of whole keyframe groups that decode about equally
        long, or ``None`` when a second demuxer would not pay (one group, or one run far shorter than the other).

        Decoding cost is counted in frames: from a group's keyframe to the last wanted frame in it.
        """
        if len(wanted) < 2 or len(self._key_pts) < 2:
            return None
        key_idx = np.searchsorted(self._pts, np.asarray(self._key_pts, np.int64))  # keyframes as frame indices
        group = np.searchsorted(key_idx, wanted, side="right") - 1
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])  # first wanted of each group
        if len(starts) < 2:
            return None
        ends = np.r_[starts[1:], len(wanted)]
        cost = np.array([wanted[e - 1] - key_idx[max(group[b], 0)] + 1 for b, e in zip(starts, ends, strict=True)])
        before = np.cumsum(cost)
        total = int(before[-1])
        # The second demuxer opens the file and seeks first (a few frames' worth of work).
        extra = _OPEN_COST_FRAMES if self._packets is None else 1
        best, k = min((max(int(before[j]), total - int(before[j]) + extra), j) for j in range(len(cost) - 1))
        if best > _MIN_GAIN * total:
            return None
        cut = int(ends[k])
        return [int(i) for i in wanted[:cut]], [int(i) for i in wanted[cut:]]

    def _companion(self) -> _StreamDecoder:
        """Another decoder on this file that shares the packet index (no rescan, no peek).

        With the packets kept in memory it is a second codec context fed from them (no file opened); otherwise a
        second demuxer of the file.
        """
        other = _StreamDecoder.__new__(_StreamDecoder)
        other.path = self.path
        other._container = None
        other._packets = None
        try:
            ctx = self._fresh_context() if self._packets is not None else None
            if ctx is not None:
                other._stream, other._ctx, other._packets = self._stream, ctx, self._packets
            else:
                other._container = _open_container(self.path)
                other._stream = other._container.streams.video[0]
                other._ctx = other._stream.codec_context
                # Slice threads at most (frame threading would log from FFmpeg's threads, and is drained by seeks).
                other._stream.thread_type = "SLICE"
                other._stream.thread_count = self._stream.thread_count
            for name in ("_tb", "_has_audio", "_codec_name", "_pts", "_key_pts", "_key_pos", "_key_seek",
                         "_output_order", "_skip_pts", "_scan_complete", "_scan_error", "_data_to_eof",
                         "_declared_frames", "_last_duration", "_rotation", "_rotation_warning"):  # fmt: skip
                setattr(other, name, getattr(self, name))
            other._reformatter = None
            other._worker_threads = False  # no frame threading: FFmpeg logs on the calling thread only
            other.frames_decoded = 0
            other._failed_pts, other._concealed_pts, other._error_keys = set(), set(), set()
            other._messages, other._lost = [], set()
            other._count_messages = True
            other._wanted, other._frames, other._pos_pts = self._wanted, None, None
        except BaseException:
            other._close_container()
            raise
        return other

    def _fresh_context(self):
        """A new decoder set up like this stream's, or ``None`` for codecs whose set-up may live outside the
        bitstream and its extradata, and for streams without extradata whose headers may come only with the first
        keyframe (then a second demuxer is opened instead)."""
        import av

        src = self._ctx
        if src.name not in _SELF_CONTAINED_CODECS or (not src.extradata and src.name not in _INTRA_ONLY_CODECS):
            return None
        try:
            ctx = av.CodecContext.create(src.name, "r")
            if src.extradata:
                ctx.extradata = src.extradata
            for name in ("width", "height", "color_range", "colorspace", "color_primaries", "color_trc"):
                setattr(ctx, name, getattr(src, name))
            # One thread: it exists to use the core the first decoder leaves idle. Slice threads here as well would
            # make both decoders wait on each other's threads (measured: 1.26x -> 1.40x over decode-all at GOP 250).
            ctx.thread_type = "SLICE"
            ctx.thread_count = 1
        except (av.FFmpegError, AttributeError, TypeError, ValueError):
            return None
        return ctx

    def _absorb(self, other: _StreamDecoder) -> None:
        """Book a companion's decoding (frames decoded, damage) as this reader's."""
        self.frames_decoded += other.frames_decoded
        self._failed_pts |= other._failed_pts
        self._concealed_pts |= other._concealed_pts
        self._error_keys |= other._error_keys
        self._lost |= other._lost
        for m in other._messages:
            if len(self._messages) < _MAX_MESSAGES and m not in self._messages:
                self._messages.append(m)


#: Packets of a video stream up to this many bytes are kept in memory after the index scan (a minute of 1080p at
#: 6 Mb/s; a 12 s VCE clip holds ~0.5 MB). Longer videos are read from the file again for each pass.
PACKET_CACHE_BYTES = 48 << 20
#: Codecs whose decoder needs nothing but the packets and the extradata (so a second one can be fed from memory).
_SELF_CONTAINED_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4", "mpeg2video", "mjpeg"})
#: Of those, the codecs whose every frame stands alone (no headers to carry over from the first keyframe).
_INTRA_ONLY_CODECS = frozenset({"mjpeg"})
#: Colour conversion runs on one thread up to this frame size (swscale's thread pool costs more than it saves).
_ONE_THREAD_PIXELS = 640 * 480


def _iter_from(items: list, start: int) -> Iterator:
    for i in range(start, len(items)):
        yield items[i]


#: A second demuxer is used only when it cuts the decoding time (in frames) to this share of one demuxer's.
_MIN_GAIN = 0.8
#: What opening the file again and seeking costs, in frames of decoding (a decoder fed from kept packets: ~1).
_OPEN_COST_FRAMES = 8
