"""CMU-MOSEI emotions (EmoNeXt recipe): six emotion intensities per video → a 7-class target distribution.

Input is a plain CSV export, one row per video (or segment)::

    video_id,happy,sad,anger,surprise,disgust,fear[,split]

with intensities in [0, 3] (MOSEI averages three annotators' 0–3 Likert ratings, so thirds are common).
Videos resolve to ``VIDEO_ROOT/{video_id}.mp4``.

**How the 7-class distribution is formed** (:func:`mosei_distribution`), in :data:`MOSEI_CLASSES` order
(the six emotions, then ``neutral``):

* if all six intensities are 0, the clip shows no emotion: the target is one-hot ``neutral``;
* otherwise the six intensities are divided by their sum and ``neutral`` is 0.

So the target always sums to 1 (what KL-divergence training needs) and keeps the relative strength of
co-occurring emotions. :data:`MOSEI_TO_FER` maps it onto the FER 7-class order
:data:`FER_CLASSES` used by the face-emotion models (``anger`` ↔ ``angry``, ``happy`` ↔ ``happy``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import Problem, Reporter, iter_csv, parse_float, run_reader, show
from emovid.labels import FER_LABELS

MOSEI_EMOTIONS: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")
MOSEI_CLASSES: tuple[str, ...] = (*MOSEI_EMOTIONS, "neutral")
#: The 7 facial-expression classes (FER-2013 order) used by face-emotion models and the synthetic generator.
FER_CLASSES: tuple[str, ...] = FER_LABELS
#: ``MOSEI_TO_FER[i]`` is the index in :data:`FER_CLASSES` of ``MOSEI_CLASSES[i]`` (MOSEI's "anger" is "angry").
MOSEI_TO_FER: tuple[int, ...] = tuple(FER_CLASSES.index({"anger": "angry"}.get(c, c)) for c in MOSEI_CLASSES)
MAX_INTENSITY = 3.0


def mosei_distribution(intensities: Sequence[float]) -> tuple[float, ...]:
    """The 7-class target (in :data:`MOSEI_CLASSES` order) for six intensities (see the module docstring)."""
    if len(intensities) != 6:
        raise ValueError(f"expected 6 intensities, got {len(intensities)}")
    total = float(sum(intensities))
    if total <= 0.0:
        return (0.0,) * 6 + (1.0,)
    return (*(float(x) / total for x in intensities), 0.0)


def to_fer_order(dist: Sequence[float]) -> tuple[float, ...]:
    """Reorder a 7-class distribution from :data:`MOSEI_CLASSES` order to :data:`FER_CLASSES` order."""
    out = [0.0] * 7
    for i, j in enumerate(MOSEI_TO_FER):
        out[j] = float(dist[i])
    return tuple(out)


@dataclass(frozen=True)
class MoseiRecord:
    """One MOSEI video.

    Attributes:
        video_id: the ``video_id`` column.
        video_path: ``VIDEO_ROOT/{video_id}{ext}``.
        intensities: six intensities in [0, 3], :data:`MOSEI_EMOTIONS` order.
        distribution: the 7-class target, :data:`MOSEI_CLASSES` order (sums to 1).
        split: the optional ``split`` column, else ``None``.
        line: 1-based CSV line.
    """

    video_id: str
    video_path: Path
    intensities: tuple[float, ...]
    distribution: tuple[float, ...]
    split: str | None = None
    line: int = 0

    @property
    def targets(self) -> dict[str, tuple[float, ...]]:
        return {"distribution": self.distribution, "intensities": self.intensities}


def read_mosei_csv(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    split: str | None = None,
    video_ext: str = ".mp4",
    problems: list[Problem] | None = None,
) -> list[MoseiRecord]:
    """Read a MOSEI emotion CSV.

    Args:
        path: the CSV file.
        video_root: folder holding ``{video_id}{video_ext}``; defaults to the CSV's folder.
        split: keep only rows whose ``split`` column equals this (requires the column).
        video_ext: video file extension.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) missing column, non-numeric/NaN intensity, intensity outside [0, 3],
            duplicate video id, ...; the message names the file and line.
    """
    root = Path(path).parent if video_root is None else Path(video_root)
    return run_reader(_read, Reporter(path, problems), root, split, video_ext)


def _read(rep: Reporter, root: Path, split: str | None, ext: str) -> list[MoseiRecord]:
    out: list[MoseiRecord] = []
    seen: dict[str, int] = {}
    rows = iter_csv(rep, ("video_id", *MOSEI_EMOTIONS) + (("split",) if split else ()), ("split",))
    for line, row in rows:
        vid = row["video_id"]
        if not vid:
            rep("malformed", "video_id: empty value", line)
            continue
        vals = [parse_float(rep, row[e], line, e, 0.0, MAX_INTENSITY) for e in MOSEI_EMOTIONS]
        if any(v is None for v in vals):
            continue
        row_split = row.get("split") or None
        if vid in seen:
            rep("duplicate_id", f"video {show(vid)} already listed at line {seen[vid]}", line)
            continue
        seen[vid] = line
        if split is not None and row_split != split:
            continue
        out.append(MoseiRecord(vid, root / f"{vid}{ext}", tuple(vals), mosei_distribution(vals), row_split, line))
    return out
