"""Errors a user can cause.

Every error raised for bad input is an :class:`EmovidError`. Its message is one line that names the
offending file (and line or key when there is one) and says what to do about it. The CLI prints that line
and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os


def display_path(path: str | os.PathLike | bytes) -> str:
    """A printable form of any path: bytes that are not UTF-8 are shown as ``\\xNN`` escapes (never raises)."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class EmovidError(Exception):
    """Base class for every error caused by user input or environment.

    Args:
        message: what went wrong and what to do, in one line.
        path: the file the error is about, if any.
    """

    exit_code = 1

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.message = message
        super().__init__(f"{display_path(self.path)}: {message}" if self.path else message)


class InputNotFoundError(EmovidError, FileNotFoundError):
    """A file or folder given by the user does not exist."""

    def __init__(self, path: str | os.PathLike, what: str = "file"):
        super().__init__(f"no such {what}; check the path", path)


class SpecialFileError(EmovidError):
    """A FIFO, device, socket or folder was given where a regular file was expected (refused before opening)."""


# --- video ---------------------------------------------------------------------------------------------------


class VideoError(EmovidError):
    """Base class for problems with a video file."""


class NotAVideoError(VideoError):
    """The file is not a container FFmpeg can open."""


class NoVideoStreamError(VideoError):
    """The container opens but holds no video stream (e.g. an audio-only file)."""


class UnsupportedCodecError(VideoError):
    """The video stream uses a codec this FFmpeg build cannot decode."""


class EmptyVideoError(VideoError):
    """The video stream yields no decodable frame."""


class TruncatedVideoError(VideoError):
    """The stream ends early or is damaged part way through."""


class FrameIndexError(EmovidError, IndexError):
    """Requested frames lie outside the video."""


# --- data and labels -----------------------------------------------------------------------------------------


class LabelFormatError(EmovidError, ValueError):
    """A label file is malformed. The message names the file and the line or key."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | str | None = None):
        self.line = line
        where = display_path(path) if path is not None else None
        if where is not None and line is not None:
            where = f"{where}:{line}"
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        Exception.__init__(self, f"{where}: {message}" if where else message)


# --- models and weights --------------------------------------------------------------------------------------


class ModelError(EmovidError):
    """Unknown model name, bad configuration or incompatible checkpoint."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are needed but cannot be downloaded (offline); says which file to put where."""


class ConfigError(EmovidError, ValueError):
    """A configuration value or command-line option is invalid."""
