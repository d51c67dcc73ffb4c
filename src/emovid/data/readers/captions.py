"""Captions: emotion-annotated captions (CLIP-ViP recipe) and MSR-VTT-style caption files.

**Emotion captions** are a JSON list of records like::

    {"video": "video7112.mp4", "video_id": "video7112", "caption": "...", "duration": 18.35, "emotion": 1,
     "positive": 4.0, "negative": 0.0, "neutral": 0.0,
     "joy": 4.0, "trust": 3.0, "surprise": 1.0, "anticipation": 3.0,
     "fear": 0.0, "sadness": 0.0, "disgust": 0.0, "anger": 0.0}

The sentiment and Plutchik values are non-negative lexicon counts (NRC-style); ``emotion`` is a non-negative
integer flag. A video may have several captions; an identical (video_id, caption) pair twice is a duplicate.
The 8 Plutchik scores are kept in :data:`PLUTCHIK_EMOTIONS` order (the original recipe binarises them, ``> 0``).

**MSR-VTT-style captions**: a CSV with ``video_id`` and ``sentence`` columns (as the 1k-A test split), or a JSON
object ``{"videos": [{"video_id": ...}, ...], "sentences": [{"video_id": ..., "caption": ..., "sen_id": ...}]}``
(as ``train_val_videodatainfo.json``; ``videos`` is optional and, when present, every sentence must name one
of them). Videos resolve to ``VIDEO_ROOT/{video_id}.mp4``.

:func:`captions_format` tells the two JSON layouts apart from the first character (a UTF-8 BOM is skipped), for
callers that accept either (``emovid train retrieval``).
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import (
    Problem,
    Reporter,
    iter_csv,
    key_path,
    parse_float,
    read_json,
    require_str,
    resolve,
    run_reader,
    show,
)
from emovid.utils.paths import check_regular_file

PLUTCHIK_EMOTIONS: tuple[str, ...] = ("joy", "trust", "surprise", "anticipation", "fear", "sadness", "disgust", "anger")
SENTIMENTS: tuple[str, ...] = ("positive", "negative", "neutral")
CAPTION_FIELDS: tuple[str, ...] = (
    "video",
    "video_id",
    "caption",
    "duration",
    "emotion",
    *SENTIMENTS,
    *PLUTCHIK_EMOTIONS,
)


@dataclass(frozen=True)
class CaptionRecord:
    """One caption of one video.

    Attributes:
        video_id: the video's id.
        video_path: the resolved video file.
        caption: the text.
        duration: video duration in seconds (``None`` for MSR-VTT-style files, which do not carry it).
        emotion: the record's ``emotion`` flag (``None`` for MSR-VTT-style files).
        sentiment: positive, negative, neutral counts (empty for MSR-VTT-style files).
        plutchik: the 8 scores in :data:`PLUTCHIK_EMOTIONS` order (empty for MSR-VTT-style files).
        index: position in the JSON list, or the 1-based CSV line.
        sen_id: MSR-VTT sentence id, when given.
    """

    video_id: str
    video_path: Path
    caption: str
    duration: float | None = None
    emotion: int | None = None
    sentiment: tuple[float, ...] = ()
    plutchik: tuple[float, ...] = ()
    index: int = 0
    sen_id: int | str | None = None

    @property
    def emotion_mask(self) -> tuple[int, ...]:
        """The original binarised Plutchik vector: 1 where a score is > 0."""
        return tuple(int(x > 0) for x in self.plutchik)

    @property
    def targets(self) -> dict:
        return {"caption": self.caption, "plutchik": self.plutchik, "emotion_mask": self.emotion_mask}


def captions_format(path: str | os.PathLike) -> str:
    """``"emotion"`` for a emotion-caption JSON list (``.json`` starting with ``[``), else ``"msrvtt"``.

    Reads only up to the first non-blank character, skipping a UTF-8 BOM (``utf-8-sig``) as the readers do, so
    both routes agree on files saved by editors that add one.

    Raises:
        InputNotFoundError: no such file.
        SpecialFileError: a folder, FIFO, device or socket (refused before opening; a FIFO would block).
    """
    p = check_regular_file(path, "caption file")
    if Path(p).suffix.lower() != ".json":
        return "msrvtt"
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    with open(p, "rb") as f:
        while chunk := f.read(1 << 16):
            text = decoder.decode(chunk).lstrip()
            if text:
                return "emotion" if text[0] == "[" else "msrvtt"
    return "msrvtt"  # empty or blank: the reader reports it


def read_emotion_captions(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    problems: list[Problem] | None = None,
) -> list[CaptionRecord]:
    """Read a emotion-caption emotion caption JSON list.

    Args:
        path: the JSON file.
        video_root: folder the ``video`` values are relative to; defaults to the file's folder.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) bad JSON, not a list, a missing field, a wrong type, NaN or a negative
            score, a duplicate caption; the message names the file and the ``[index].field``.
    """
    root = Path(path).parent if video_root is None else Path(video_root)
    return run_reader(_read_emotion, Reporter(path, problems), root)


def _read_emotion(rep: Reporter, root: Path) -> list[CaptionRecord]:
    data = read_json(rep)
    if not isinstance(data, list):
        rep.fatal(f"expected a JSON list of caption records, found {type(data).__name__}")
    if not data:
        rep("empty", "the list holds no caption records")
    out: list[CaptionRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(data):
        where = key_path(i)
        if not isinstance(rec, dict):
            rep("malformed", f"expected an object, found {type(rec).__name__}", where)
            continue
        missing = [f for f in CAPTION_FIELDS if f not in rec]
        if missing:
            rep("malformed", f"missing field(s) {', '.join(missing)}", where)
            continue
        video = require_str(rep, rec["video"], key_path(i, "video"), "video")
        vid = require_str(rep, rec["video_id"], key_path(i, "video_id"), "video_id")
        cap = require_str(rep, rec["caption"], key_path(i, "caption"), "caption")
        dur = parse_float(rep, rec["duration"], key_path(i, "duration"), "duration", 0.0, float("inf"))
        emo = rec["emotion"]
        if isinstance(emo, bool) or not isinstance(emo, int) or emo < 0:
            rep("malformed", f"emotion: expected a non-negative integer, got {show(emo)}", key_path(i, "emotion"))
            emo = None
        sent = [parse_float(rep, rec[k], key_path(i, k), k, 0.0, float("inf")) for k in SENTIMENTS]
        plut = [parse_float(rep, rec[k], key_path(i, k), k, 0.0, float("inf")) for k in PLUTCHIK_EMOTIONS]
        if None in (video, vid, cap, dur, emo) or None in sent or None in plut:
            continue
        if (vid, cap) in seen:
            rep("duplicate_id", f"same caption for video {show(vid)} already at index {seen[vid, cap]}", where)
            continue
        seen[vid, cap] = i
        out.append(CaptionRecord(vid, resolve(root, video), cap, dur, emo, tuple(sent), tuple(plut), i))
    return out


def read_msrvtt_captions(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    video_ext: str = ".mp4",
    problems: list[Problem] | None = None,
) -> list[CaptionRecord]:
    """Read MSR-VTT-style captions (``.csv`` with ``video_id,sentence``, or the ``.json`` layout).

    Args:
        path: the file; the format follows its extension.
        video_root: folder of ``{video_id}{video_ext}``; defaults to the file's folder.
        video_ext: video file extension.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) missing column/key, empty caption, wrong type, a sentence naming a video
            not in ``videos``, a duplicate caption; the message names the file and line or key.
    """
    root = Path(path).parent if video_root is None else Path(video_root)
    fn = _read_msrvtt_csv if Path(path).suffix.lower() == ".csv" else _read_msrvtt_json
    return run_reader(fn, Reporter(path, problems), root, video_ext)


def _read_msrvtt_csv(rep: Reporter, root: Path, ext: str) -> list[CaptionRecord]:
    out: list[CaptionRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in iter_csv(rep, ("video_id", "sentence")):
        vid, cap = row["video_id"], row["sentence"]
        if not vid or not cap:
            rep("malformed", f"{'video_id' if not vid else 'sentence'}: empty value", line)
            continue
        if (vid, cap) in seen:
            rep("duplicate_id", f"same caption for video {show(vid)} already at line {seen[vid, cap]}", line)
            continue
        seen[vid, cap] = line
        out.append(CaptionRecord(vid, root / f"{vid}{ext}", cap, index=line))
    return out


def _read_msrvtt_json(rep: Reporter, root: Path, ext: str) -> list[CaptionRecord]:
    data = read_json(rep)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        rep.fatal('expected a JSON object with a "sentences" list')
    if not data["sentences"]:
        rep("empty", "'sentences' is empty: the file holds no captions", "sentences")
    known = None
    if "videos" in data:
        if not isinstance(data["videos"], list):
            rep.fatal("'videos' must be a list", "videos")
        known = set()
        for j, v in enumerate(data["videos"]):
            vid = v.get("video_id") if isinstance(v, dict) else None
            if require_str(rep, vid, key_path("videos", j, "video_id"), "video_id") is not None:
                known.add(vid)
    out: list[CaptionRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for i, s in enumerate(data["sentences"]):
        where = key_path("sentences", i)
        if not isinstance(s, dict):
            rep("malformed", f"expected an object, found {type(s).__name__}", where)
            continue
        missing = [k for k in ("video_id", "caption") if k not in s]
        if missing:
            rep("malformed", f"missing field(s) {', '.join(missing)}", where)
            continue
        vid = require_str(rep, s["video_id"], key_path("sentences", i, "video_id"), "video_id")
        cap = require_str(rep, s["caption"], key_path("sentences", i, "caption"), "caption")
        if vid is None or cap is None:
            continue
        if known is not None and vid not in known:
            rep("unknown_id", f"video {show(vid)} is not in 'videos'", key_path("sentences", i, "video_id"))
            continue
        if (vid, cap) in seen:
            rep("duplicate_id", f"same caption for video {show(vid)} already at sentences[{seen[vid, cap]}]", where)
            continue
        seen[vid, cap] = i
        out.append(CaptionRecord(vid, root / f"{vid}{ext}", cap, index=i, sen_id=s.get("sen_id")))
    return out
