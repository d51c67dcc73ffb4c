"""SEWA-style continuous valence/arousal (VAERR): a time series per video.

CSV, one row per annotated frame or timestamp::

    video,time,valence,arousal

``time`` is in seconds (≥ 0), ``valence`` and ``arousal`` in [-1, 1]. Rows may come in any order; each
record holds one video's samples sorted by time. ``video`` is an id (``VIDEO_ROOT/{video}.mp4``) or a file
name with a video extension (``VIDEO_ROOT/{video}``).

A time earlier than the previous row of the same video is reported once per video as an ``unordered`` warning
(often two recordings under one id); the rows are still kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovid.data.readers._common import Problem, Reporter, iter_csv, parse_float, resolve, run_reader, show

COLUMNS = ("video", "time", "valence", "arousal")


@dataclass(frozen=True, eq=False)
class VARecord:
    """One video's valence/arousal trajectory.

    Attributes:
        video_id: the ``video`` column.
        video_path: the resolved video file.
        times: seconds, strictly increasing, float64 ``[N]``.
        valence: float32 ``[N]`` in [-1, 1].
        arousal: float32 ``[N]`` in [-1, 1].
        lines: the CSV line of each sample, same order.
    """

    video_id: str
    video_path: Path
    times: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    lines: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.times)

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {"times": self.times, "valence": self.valence, "arousal": self.arousal}

    def at(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Valence and arousal linearly interpolated at time(s) ``t`` (held constant outside the samples)."""
        t = np.asarray(t, np.float64)
        return np.interp(t, self.times, self.valence), np.interp(t, self.times, self.arousal)


def read_va_csv(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    video_ext: str = ".mp4",
    problems: list[Problem] | None = None,
) -> list[VARecord]:
    """Read a valence/arousal CSV into one record per video (in order of first appearance).

    Args:
        path: the CSV file.
        video_root: folder of the videos; defaults to the CSV's folder.
        video_ext: extension appended to ``video`` values that have none.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) missing column, NaN or non-numeric value, value outside [-1, 1], negative
            time, two rows for the same video and time; the message names the file and line.
    """
    from emovid.video import is_video_path

    root = Path(path).parent if video_root is None else Path(video_root)
    return run_reader(_read, Reporter(path, problems), root, video_ext, is_video_path)


def _read(rep: Reporter, root: Path, ext: str, is_video_path) -> list[VARecord]:
    series: dict[str, dict[float, tuple[float, float, int]]] = {}
    last: dict[str, tuple[float, int]] = {}  # video -> (time, line) of its previous row, to spot time going back
    unordered: set[str] = set()
    for line, row in iter_csv(rep, COLUMNS):
        vid = row["video"]
        if not vid:
            rep("malformed", "video: empty value", line)
            continue
        t = parse_float(rep, row["time"], line, "time", 0.0, float("inf"))
        v = parse_float(rep, row["valence"], line, "valence", -1.0, 1.0)
        a = parse_float(rep, row["arousal"], line, "arousal", -1.0, 1.0)
        if None in (t, v, a):
            continue
        s = series.setdefault(vid, {})
        if t in s:
            rep("duplicate_id", f"video {show(vid)} already has a sample at time {t:g} (line {s[t][2]})", line)
            continue
        s[t] = (v, a, line)
        prev = last.get(vid)
        if prev is not None and t < prev[0] and vid not in unordered:
            unordered.add(vid)
            rep(
                "unordered",
                f"time {t:g} of video {show(vid)} is before {prev[0]:g} (line {prev[1]}); rows are sorted by time, "
                "check they all belong to this video",
                line,
            )
        last[vid] = (t, line)
    out = []
    for vid, s in series.items():
        ts = sorted(s)
        file = vid if is_video_path(vid) else f"{vid}{ext}"
        out.append(
            VARecord(
                vid,
                resolve(root, file),
                np.asarray(ts, np.float64),
                np.asarray([s[t][0] for t in ts], np.float32),
                np.asarray([s[t][1] for t in ts], np.float32),
                tuple(s[t][2] for t in ts),
            )
        )
    return out
