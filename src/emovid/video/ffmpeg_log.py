"""FFmpeg's log: kept off the terminal and handed to the reader whose demuxing or decoding caused it.

:data:`_LOG` is the one process-wide :class:`_FFmpegLog`; :func:`_ffmpeg_reason` shortens an ``av.FFmpegError``
to the reason FFmpeg gives.
"""

from __future__ import annotations

import contextlib
import threading


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

    This capture is opt-in (``EMOVID_FFMPEG_LOG=1``) because PyAV's log callback can deadlock frame-threaded
    decoding. Without it, or when an application set up FFmpeg logging itself (``av.logging.set_level``) before the
    first reader, nothing is captured and damage is counted from decode failures and frame flags only.
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
        import os

        import av.logging

        with self._lock:
            if self._ready:
                return
            # Opt-in only: PyAV's log callback takes the GIL from FFmpeg's worker threads, which can deadlock frame-
            # threaded decoding (PyAV issues #751, #909: seen here as a rare hang of the test suite). By default
            # damage is counted from decode failures, frame flags and the container alone.
            if av.logging.get_level() is None and os.environ.get("EMOVID_FFMPEG_LOG", "") in ("1", "true", "yes"):
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
