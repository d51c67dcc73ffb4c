"""Video Cognitive Empathy (VCE, Emodiversity): 27 emotion intensities per video.

Layout::

    vce_dataset/
      metadata.json        {id: {codec_name, duration "12.000000", file, frame_rate "30/1", height,
                                 number_of_frames "360", width}}
      train_labels.json    {id: {"emotions": {27 names: float in [0, 1]}, "file": "videos/ID.mp4",
      test_labels.json           "topK": [3 names, most intense first]}}
      videos/00000.mp4 ...

The 27 names keep the dataset's documented (alphabetical) order, :data:`VCE_EMOTIONS`; records hold the
intensities as a tuple in that order.

Every ``file`` (in ``metadata.json`` or the labels) must be a relative path inside the dataset folder: absolute
paths and ``..`` steps above it are reported as ``unsafe_path`` and never opened.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from emovid.data.readers._common import (
    Problem,
    Reporter,
    clip,
    contained,
    key_path,
    parse_float,
    read_json,
    require_str,
    resolve,
    run_reader,
    show,
)
from emovid.errors import InputNotFoundError

VCE_EMOTIONS: tuple[str, ...] = (
    "Admiration",
    "Adoration",
    "Aesthetic Appreciation",
    "Amusement",
    "Anger",
    "Anxiety",
    "Awe (or Wonder)",
    "Awkwardness",
    "Boredom",
    "Calmness",
    "Confusion",
    "Craving",
    "Disgust",
    "Empathic Pain",
    "Entrancement",
    "Excitement",
    "Fear",
    "Horror",
    "Interest",
    "Joy",
    "Nostalgia",
    "Relief",
    "Romance",
    "Sadness",
    "Satisfaction",
    "Sexual Desire",
    "Surprise",
)
VCE_SPLITS = ("train", "test")
# A rate as ffprobe writes it ("30/1", "30000/1001") or a plain decimal; no exponent, since Fraction("1e999999999")
# would compute a billion-digit integer.
_RATE_RE = re.compile(r"\s*\d{1,12}(\.\d{1,12})?(/\d{1,12})?\s*")


@dataclass(frozen=True)
class VideoMeta:
    """One entry of a VCE/V2V ``metadata.json``.

    Attributes:
        video_id: the key.
        file: path relative to the dataset root, e.g. ``videos/00000.mp4``.
        codec: ``codec_name``.
        duration: seconds (stored as a string in the file).
        frame_rate: exact rate parsed from e.g. ``"30/1"``.
        num_frames: ``number_of_frames`` (stored as a string in the file).
        width: pixels.
        height: pixels.
    """

    video_id: str
    file: str
    codec: str
    duration: float
    frame_rate: Fraction
    num_frames: int
    width: int
    height: int

    @property
    def fps(self) -> float:
        return float(self.frame_rate)


@dataclass(frozen=True)
class VCERecord:
    """One labelled VCE video.

    Attributes:
        video_id: the key, e.g. ``"00000"``.
        video_path: resolved video file.
        emotions: 27 intensities in [0, 1], in :data:`VCE_EMOTIONS` order.
        top_k: the file's ``topK`` (most intense first); computed from ``emotions`` when absent.
        split: ``train`` or ``test`` (or the labels file's stem).
        meta: the video's ``metadata.json`` entry, when a metadata file was read.
    """

    video_id: str
    video_path: Path
    emotions: tuple[float, ...]
    top_k: tuple[str, ...]
    split: str
    meta: VideoMeta | None = None

    @property
    def targets(self) -> dict[str, tuple[float, ...]]:
        return {"emotions": self.emotions}


def read_vce_metadata(path: str | os.PathLike, problems: list[Problem] | None = None) -> dict[str, VideoMeta]:
    """Read a VCE/V2V ``metadata.json`` into ``{id: VideoMeta}``."""
    meta = run_reader(_read_meta, Reporter(path, problems))
    return meta if isinstance(meta, dict) else {}


def _read_meta(rep: Reporter) -> dict[str, VideoMeta]:
    data = read_json(rep)
    if not isinstance(data, dict):
        rep.fatal(f"expected a JSON object {{id: {{...}}}}, found {type(data).__name__}")
    out: dict[str, VideoMeta] = {}
    for vid, entry in data.items():
        if not isinstance(entry, dict):
            rep("malformed", f"expected an object, found {type(entry).__name__}", key_path(vid))
            continue
        missing = [k for k in ("file", "frame_rate", "number_of_frames", "duration") if k not in entry]
        if missing:
            rep("malformed", f"missing field(s) {', '.join(missing)}", key_path(vid))
            continue
        file = require_str(rep, entry["file"], key_path(vid, "file"), "file")
        if file is not None:
            file = contained(rep, file, key_path(vid, "file"), "file")
        rate = _parse_rate(rep, entry["frame_rate"], key_path(vid, "frame_rate"))
        nf = parse_float(rep, entry["number_of_frames"], key_path(vid, "number_of_frames"), "number_of_frames", 0)
        dur = parse_float(rep, entry["duration"], key_path(vid, "duration"), "duration", 0)
        w = parse_float(rep, entry.get("width", 0), key_path(vid, "width"), "width", 0)
        h = parse_float(rep, entry.get("height", 0), key_path(vid, "height"), "height", 0)
        codec = entry.get("codec_name", "")
        if not isinstance(codec, str):
            rep("malformed", f"codec_name: expected a string, got {type(codec).__name__}", key_path(vid, "codec_name"))
            codec = None
        if None in (file, rate, nf, dur, w, h, codec):
            continue
        out[vid] = VideoMeta(vid, file, codec, dur, rate, int(nf), int(w), int(h))
    return out


def load_metadata(
    root: Path, metadata: str | os.PathLike | bool, problems: list[Problem] | None
) -> dict[str, VideoMeta] | None:
    """Metadata for a labels file in ``root`` (see :func:`read_vce`); ``None`` when absent or unreadable."""
    if metadata is True:
        if not (root / "metadata.json").exists():
            return None
        metadata = root / "metadata.json"
    elif not metadata:
        return None
    if not Path(metadata).exists():
        raise InputNotFoundError(metadata, "metadata file")
    meta = run_reader(_read_meta, Reporter(metadata, problems))
    # A metadata file that could not be parsed at all (already reported) must not make every id "unknown".
    return meta if isinstance(meta, dict) else None


def _parse_rate(rep: Reporter, value, where: str) -> Fraction | None:
    try:
        if isinstance(value, float) and math.isfinite(value):
            rate = Fraction(value)
        elif isinstance(value, int | str) and not isinstance(value, bool) and _RATE_RE.fullmatch(str(value)):
            rate = Fraction(str(value).strip())
        else:
            raise ValueError(value)
    except (ValueError, ZeroDivisionError):
        rep("malformed", f"frame_rate: {show(value)} is not a rate like '30/1'", where)
        return None
    if rate <= 0:
        rep("out_of_range", f"frame_rate: {show(value)} must be positive", where)
        return None
    return rate


def read_vce(
    path: str | os.PathLike,
    split: str = "train",
    metadata: str | os.PathLike | bool = True,
    problems: list[Problem] | None = None,
) -> list[VCERecord]:
    """Read VCE labels.

    Args:
        path: the dataset folder (reads ``{split}_labels.json``) or a labels JSON file; video paths resolve
            against the file's folder.
        split: which labels file to read when ``path`` is a folder.
        metadata: ``True`` reads ``metadata.json`` beside the labels if it exists (then every labelled id must be
            in it), a path reads that file, ``False`` skips it.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) bad JSON, missing/unknown emotion names, values outside [0, 1] or not
            numbers, unknown ids, ...; the message names the file and the key.
    """
    path = Path(path)
    labels = path / f"{split}_labels.json" if path.is_dir() else path
    root = labels.parent
    meta = load_metadata(root, metadata, problems)
    split_name = split if path.is_dir() else labels.stem.removesuffix("_labels")
    return run_reader(_read_labels, Reporter(labels, problems), root, split_name, meta)


def _read_labels(rep: Reporter, root: Path, split: str, meta: dict[str, VideoMeta] | None) -> list[VCERecord]:
    data = read_json(rep)
    if not isinstance(data, dict):
        rep.fatal(f"expected a JSON object {{id: {{emotions, file, topK}}}}, found {type(data).__name__}")
    if not data:
        rep("empty", "the file lists no videos")
    names = set(VCE_EMOTIONS)
    out: list[VCERecord] = []
    for vid, entry in data.items():
        where = key_path(vid)
        if not isinstance(entry, dict):
            rep("malformed", f"expected an object, found {type(entry).__name__}", where)
            continue
        emo = entry.get("emotions")
        if not isinstance(emo, dict):
            rep("malformed", "missing 'emotions' object" if emo is None else "'emotions' must be an object", where)
            continue
        unknown = [k for k in emo if k not in names]
        missing = [k for k in VCE_EMOTIONS if k not in emo]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing emotion(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown emotion(s) {', '.join(unknown)}")
            rep("malformed", clip("; ".join(parts), 400), key_path(vid, "emotions"))
            continue
        values = [parse_float(rep, emo[k], key_path(vid, "emotions", k), k, 0.0, 1.0) for k in VCE_EMOTIONS]
        if any(v is None for v in values):
            continue
        file = entry.get("file", f"videos/{vid}.mp4")
        if require_str(rep, file, key_path(vid, "file"), "file") is None:
            continue
        if contained(rep, file, key_path(vid, "file"), "file") is None:
            continue
        top = entry.get("topK")
        if top is None:
            order = sorted(range(len(values)), key=lambda i: -values[i])[:3]
            top_k = tuple(VCE_EMOTIONS[i] for i in order)
        elif not isinstance(top, list) or not all(isinstance(t, str) and t in names for t in top):
            rep("malformed", f"topK must be a list of emotion names, got {show(top)}", key_path(vid, "topK"))
            continue
        else:
            top_k = tuple(top)
        m = None
        if meta is not None:
            m = meta.get(vid)
            if m is None:
                rep("unknown_id", f"video {vid!r} is not in metadata.json", where)
                continue
        out.append(VCERecord(vid, resolve(root, file), tuple(values), top_k, split, m))
    return out
