"""Validate a labelled dataset: the report behind ``emovid data check FORMAT PATH [--video-root DIR]``.

Reads the labels in collect mode (every malformed row, bad value, duplicate and unknown id is kept with its
file and line/key), then checks every referenced video once: missing files and files FFmpeg cannot read
(:func:`emovid.video.probe`). Cross-file rules are checked too: a VCE video in both train and test, a V2V
video in more than one of train/test/listwise (the dataset keeps them disjoint), an FIV2 clip in two pickles.

**Errors and warnings.** Every problem has a severity. Errors make the check fail (``-> FAILED``, exit 1).
Warnings are listed with a ``warning:`` prefix and counted after ``warnings:`` in the summary, but the verdict
stays ``OK`` and the exit code 0: the data is usable (and the readers accept it when training, logging the
warning) yet deserves a look. The decisions:

* *Errors*: unparsable files (bad JSON or CSV, invalid UTF-8, NUL bytes in a CSV row or an id, JSON nested
  too deeply, numbers too large, files over the size limit, out of memory); folders, FIFOs, devices and sockets
  given as label files (refused before opening, so a FIFO cannot hang the check); values out of range;
  duplicate and unknown ids; missing and unreadable videos; a VCE or V2V folder without ``train_labels.json``
  or ``metadata.json`` (``missing_file``: the layout requires both, and without metadata no id can be checked);
  a ``file`` in ``metadata.json`` or the labels that is absolute or climbs out of the dataset folder with ``..``
  (``unsafe_path``: such a file is never opened, not even probed).
* *Warnings*: V2V judgements that contradict each other (``contradiction``: ``[a, b]`` and ``[b, a]``, also
  inside listwise rankings; real annotators disagree) and V2V comparisons repeated verbatim
  (``duplicate_comparison``: repeated judgements only re-weight a pair); valence/arousal times that go
  backwards within a video (``unordered``: the format allows any row order, but it often means two recordings
  share an id).
* *Empty files* (``empty``: a CSV with a header and no rows, an empty JSON list/object, an empty
  ``comparisons`` or ``sentences`` list, a pickle with no clips) are an error for the file given on the command
  line and for a dataset's training file (``train_labels.json``, ``annotation_training.pkl``), since there is
  nothing to train on; an empty extra split (VCE ``test_labels.json``, V2V ``test``/``listwise_labels.json``,
  FIV2 validation/test pickles) is only a warning, as small datasets legitimately have one.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emovid.data.readers import (
    read_emotion_captions,
    read_fiv2,
    read_intensity_csv,
    read_mosei_csv,
    read_msrvtt_captions,
    read_v2v,
    read_va_csv,
    read_vce,
)
from emovid.data.readers._common import PROBLEM_KINDS, Problem, key_path, show
from emovid.errors import ConfigError, EmovidError, InputNotFoundError

FORMATS = ("intensity", "vce", "v2v", "mosei", "fiv2", "va", "captions", "msrvtt")
ALIASES = {"sewa": "va", "intensity_csv": "intensity", "cmu_mosei": "mosei", "first_impressions": "fiv2"}


@dataclass
class CheckReport:
    """What :func:`check_labels` found.

    Attributes:
        format: the label format checked.
        path: the path given.
        files: label files read.
        records: records read without problems.
        videos: distinct videos referenced by those records.
        videos_ok: videos that exist (and, when probed, open as video).
        probed: whether videos were opened with :func:`emovid.video.probe`.
        problems: every problem (errors and warnings), in the order found.
    """

    format: str
    path: str
    files: list[str] = field(default_factory=list)
    records: int = 0
    videos: int = 0
    videos_ok: int = 0
    probed: bool = True
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.is_warning]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def counts(self, problems: list[Problem] | None = None) -> dict[str, int]:
        c = Counter(p.kind for p in (self.problems if problems is None else problems))
        return {k: c.get(k, 0) for k in PROBLEM_KINDS}

    def summary(self) -> str:
        c = self.counts()
        missing, unreadable = c["missing_video"], c["unreadable_video"]
        vids = f"{self.videos} videos ({self.videos_ok} ok, {missing} missing, {unreadable} unreadable"
        vids += ")" if self.probed else ", not probed)"
        found = ", ".join(f"{n} {k}" for k, n in self.counts(self.errors).items() if n) or "none"
        warned = ", ".join(f"{n} {k}" for k, n in self.counts(self.warnings).items() if n)
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"{self.format}: {len(self.files)} label file(s), {self.records} records, {vids}; "
            f"problems: {found}{f'; warnings: {warned}' if warned else ''} -> {verdict}"
        )

    def format_text(self, max_problems: int | None = 50) -> str:
        lines = []
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        for p in shown:
            lines.append(f"{'warning: ' if p.is_warning else ''}{p.kind}: {p}")
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more (use --max-problems 0 to list all)")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "path": self.path,
            "files": self.files,
            "records": self.records,
            "videos": self.videos,
            "videos_ok": self.videos_ok,
            "probed": self.probed,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "counts": self.counts(),
            "problems": [p.to_dict() for p in self.problems],
        }


# Each loader returns (files read, [(video path, label file, where), ...], number of records).
_Refs = list[tuple[Path, str, int | str | None]]


def check_labels(
    fmt: str,
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    probe_videos: bool = True,
) -> CheckReport:
    """Check a label file (or dataset folder) of format ``fmt`` and its videos.

    Args:
        fmt: one of :data:`FORMATS` (``sewa`` is accepted for ``va``).
        path: the label file, or for ``vce``/``v2v``/``fiv2`` the dataset folder.
        video_root: where the videos are; defaults to each format's usual place (the label file's folder, or
            the dataset root for ``vce``/``v2v``; the pickle's folder and its sub-folders for ``fiv2``).
        probe_videos: open each existing video to check it is readable (slower on big sets).

    Raises:
        ConfigError: unknown format.
        InputNotFoundError: ``path`` or ``video_root`` does not exist.
    """
    fmt = ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise ConfigError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(path)
    if video_root is not None and not Path(video_root).is_dir():
        raise InputNotFoundError(video_root, "video folder")
    report = CheckReport(fmt, str(path), probed=probe_videos)
    files, refs, n_records = _LOADERS[fmt](path, None if video_root is None else Path(video_root), report.problems)
    report.files = [str(f) for f in files]
    report.records = n_records
    _check_videos(refs, report, probe_videos)
    return report


def _check_videos(refs: _Refs, report: CheckReport, probe_videos: bool) -> None:
    from emovid.video import probe

    seen: set[Path] = set()
    for video, label_file, where in refs:
        if video in seen:
            continue
        seen.add(video)
        if not video.is_file():
            report.problems.append(Problem("missing_video", f"video {video} not found", label_file, where))
            continue
        if probe_videos:
            try:
                probe(video)
            except EmovidError as e:
                msg = f"video {video} is unreadable: {getattr(e, 'message', str(e))}"
                report.problems.append(Problem("unreadable_video", msg, label_file, where))
                continue
        report.videos_ok += 1
    report.videos = len(seen)


def _reroot(p: Path, old_root: Path, new_root: Path | None) -> Path:
    if new_root is None:
        return p
    try:
        return new_root / p.relative_to(old_root)
    except ValueError:
        return p


def _required(problems: list[Problem], label_file: Path, start: int = 0) -> None:
    """Make ``empty`` warnings about ``label_file`` (found from ``problems[start:]``) errors: it must hold records."""
    for i in range(start, len(problems)):
        p = problems[i]
        if p.kind == "empty" and p.is_warning and p.path == str(label_file):
            problems[i] = dataclasses.replace(p, severity="error", message=f"{p.message}; nothing to train on")


def _single_csv(reader: Callable) -> Callable:
    def load(path: Path, root: Path | None, problems: list[Problem]):
        start = len(problems)
        recs = reader(path, video_root=root, problems=problems)
        _required(problems, path, start)
        refs = [(r.video_path, str(path), getattr(r, "line", None) or _first_line(r)) for r in recs]
        return [path], refs, len(recs)

    return load


def _first_line(r) -> int | None:
    lines = getattr(r, "lines", ())
    return lines[0] if lines else None


def _layout(path: Path, name: str, problems: list[Problem], what: str) -> None:
    """Report ``name`` missing from a dataset folder (``missing_file``)."""
    if not (path / name).exists():
        problems.append(Problem("missing_file", f"no {name} in the folder; a {what}", str(path)))


def _load_vce(path: Path, root: Path | None, problems: list[Problem]):
    if path.is_dir():
        _layout(path, "train_labels.json", problems, "VCE dataset needs it (its training labels)")
        _layout(path, "metadata.json", problems, "VCE dataset needs it (every video's id and file)")
        splits = [s for s in ("train", "test") if (path / f"{s}_labels.json").exists()]
    else:
        splits = [None]
    files, refs, where_seen = [], [], {}
    for s in splits:
        labels = path / f"{s}_labels.json" if s else path
        files.append(labels)
        start = len(problems)
        recs = read_vce(labels, problems=problems)
        if s in (None, "train"):
            _required(problems, labels, start)
        for r in recs:
            key = key_path(r.video_id)
            if r.video_id in where_seen:
                msg = f"video {show(r.video_id)} is also in {where_seen[r.video_id]}"
                problems.append(Problem("duplicate_id", msg, str(labels), key))
                continue
            where_seen[r.video_id] = labels.name
            refs.append((_reroot(r.video_path, labels.parent, root), str(labels), key))
    return files, refs, len(refs)


def _load_v2v(path: Path, root: Path | None, problems: list[Problem]):
    if path.is_dir():
        _layout(path, "train_labels.json", problems, "V2V dataset needs it (its training comparisons)")
        _layout(path, "metadata.json", problems, "V2V dataset needs it (every video's id and file)")
        splits = [s for s in ("train", "test", "listwise") if (path / f"{s}_labels.json").exists()]
        targets = [(path / f"{s}_labels.json", s, s == "train") for s in splits]
    else:
        targets = [(path, path.stem.removesuffix("_labels"), True)]
    files, refs, split_of, n = [], [], {}, 0
    for labels, split, required in targets:
        files.append(labels)
        start = len(problems)
        recs = read_v2v(labels, split=split, problems=problems)
        if required:
            _required(problems, labels, start)
        for r in recs:
            where = key_path("comparisons", r.index)
            clash = [v for v in r.video_ids if split_of.get(v, split) != split]
            if clash:
                other = split_of[clash[0]]
                msg = f"video {show(clash[0])} is also in the {other} split; V2V splits must not share videos"
                problems.append(Problem("duplicate_id", msg, str(labels), where))
                continue
            n += 1
            for v, p in zip(r.video_ids, r.video_paths, strict=False):
                split_of[v] = split
                refs.append((_reroot(p, labels.parent, root), str(labels), where))
    return files, refs, n


def _load_fiv2(path: Path, root: Path | None, problems: list[Problem]):
    pkls = sorted(path.glob("annotation_*.pkl")) if path.is_dir() else [path]
    if not pkls:
        problems.append(Problem("missing_file", "no annotation_*.pkl in the folder", str(path)))
    dirs = [root] if root is not None else None
    files, refs, where_seen = [], [], {}
    for pkl in pkls:
        files.append(pkl)
        start = len(problems)
        recs = read_fiv2(pkl, video_dirs=dirs, problems=problems)
        if not path.is_dir() or pkl.name == "annotation_training.pkl":
            _required(problems, pkl, start)
        for r in recs:
            key = key_path(r.file)
            if r.file in where_seen:
                problems.append(
                    Problem("duplicate_id", f"clip {show(r.file)} is also in {where_seen[r.file]}", str(pkl), key)
                )
                continue
            where_seen[r.file] = pkl.name
            refs.append((r.video_path, str(pkl), key))
    return files, refs, len(refs)


def _load_captions(path: Path, root: Path | None, problems: list[Problem]):
    start = len(problems)
    recs = read_emotion_captions(path, video_root=root, problems=problems)
    _required(problems, path, start)
    return [path], [(r.video_path, str(path), key_path(r.index)) for r in recs], len(recs)


def _load_msrvtt(path: Path, root: Path | None, problems: list[Problem]):
    start = len(problems)
    recs = read_msrvtt_captions(path, video_root=root, problems=problems)
    _required(problems, path, start)
    is_csv = path.suffix.lower() == ".csv"
    refs = [(r.video_path, str(path), r.index if is_csv else key_path("sentences", r.index)) for r in recs]
    return [path], refs, len(recs)


_LOADERS: dict[str, Callable] = {
    "intensity": _single_csv(read_intensity_csv),
    "vce": _load_vce,
    "v2v": _load_v2v,
    "mosei": _single_csv(read_mosei_csv),
    "fiv2": _load_fiv2,
    "va": _single_csv(read_va_csv),
    "captions": _load_captions,
    "msrvtt": _load_msrvtt,
}

__all__ = ["ALIASES", "FORMATS", "CheckReport", "check_labels"]
