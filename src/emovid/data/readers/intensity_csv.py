"""Intensity CSV (RankNet-X3D): ``video_path,intensity_score`` (+ extra columns, ignored).

``video_path`` is relative to the video root (``--video-root``; default: the CSV's folder). The score is any
finite number (the original annotation scale is free); ranking pairs are built from it by :mod:`emovid.data.pairs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import Problem, Reporter, iter_csv, parse_float, resolve, run_reader, show

COLUMNS = ("video_path", "intensity_score")


@dataclass(frozen=True)
class IntensityRecord:
    """One annotated video.

    Attributes:
        video_id: the ``video_path`` value as written in the CSV (unique per file).
        video_path: the video file, resolved against the video root.
        intensity: the ``intensity_score``.
        line: 1-based CSV line (header = 1).
    """

    video_id: str
    video_path: Path
    intensity: float
    line: int = 0

    @property
    def targets(self) -> dict[str, float]:
        return {"intensity": self.intensity}


def read_intensity_csv(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    problems: list[Problem] | None = None,
) -> list[IntensityRecord]:
    """Read an intensity CSV.

    Args:
        path: the CSV file.
        video_root: folder the ``video_path`` values are relative to; defaults to the CSV's folder.
        problems: collect problems here instead of raising (see :mod:`emovid.data.readers._common`).

    Raises:
        LabelFormatError: (raise mode) missing column, empty/non-numeric/NaN score, duplicate video, bad encoding,
            empty file; the message names the file and line.
    """
    root = Path(path).parent if video_root is None else Path(video_root)
    return run_reader(_read, Reporter(path, problems), root)


def _read(rep: Reporter, root: Path) -> list[IntensityRecord]:
    out: list[IntensityRecord] = []
    seen: dict[str, int] = {}
    for line, row in iter_csv(rep, COLUMNS):
        vid = row["video_path"]
        if not vid:
            rep("malformed", "video_path: empty value", line)
            continue
        score = parse_float(rep, row["intensity_score"], line, "intensity_score")
        if score is None:
            continue
        if vid in seen:
            rep("duplicate_id", f"video {show(vid)} already listed at line {seen[vid]}", line)
            continue
        seen[vid] = line
        out.append(IntensityRecord(vid, resolve(root, vid), score, line))
    return out
