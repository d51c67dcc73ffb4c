"""Validate a labelled dataset: the report behind ``emovid data check FORMAT PATH [--video-root DIR]``.

Reads the labels in collect mode (every malformed row, bad value, duplicate and unknown id is kept with its
file and line/key), then checks every referenced video once: missing files and files FFmpeg cannot read
(:func:`emovid.video.probe`). Cross-file rules are checked too: a VCE video in both train and test, a V2V
video in more than one of train/test/listwise (the dataset keeps them disjoint), an FIV2 clip in two pickles.
"""

from __future__ import annotations

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
from emovid.data.readers._common import PROBLEM_KINDS, Problem, key_path
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
        problems: every problem, in the order found.
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
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        c = Counter(p.kind for p in self.problems)
        return {k: c.get(k, 0) for k in PROBLEM_KINDS}

    def summary(self) -> str:
        c = self.counts()
        missing, unreadable = c["missing_video"], c["unreadable_video"]
        vids = f"{self.videos} videos ({self.videos_ok} ok, {missing} missing, {unreadable} unreadable"
        vids += ")" if self.probed else ", not probed)"
        found = ", ".join(f"{n} {k}" for k, n in c.items() if n) or "none"
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"{self.format}: {len(self.files)} label file(s), {self.records} records, {vids}; "
            f"problems: {found} -> {verdict}"
        )

    def format_text(self, max_problems: int | None = 50) -> str:
        lines = []
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        for p in shown:
            lines.append(f"{p.kind}: {p}")
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


def _single_csv(reader: Callable) -> Callable:
    def load(path: Path, root: Path | None, problems: list[Problem]):
        recs = reader(path, video_root=root, problems=problems)
        refs = [(r.video_path, str(path), getattr(r, "line", None) or _first_line(r)) for r in recs]
        return [path], refs, len(recs)

    return load


def _first_line(r) -> int | None:
    lines = getattr(r, "lines", ())
    return lines[0] if lines else None


def _load_vce(path: Path, root: Path | None, problems: list[Problem]):
    splits = [s for s in ("train", "test") if (path / f"{s}_labels.json").exists()] if path.is_dir() else [None]
    if path.is_dir() and not splits:
        problems.append(Problem("malformed", "no train_labels.json or test_labels.json in the folder", str(path)))
    files, refs, where_seen = [], [], {}
    for s in splits:
        labels = path / f"{s}_labels.json" if s else path
        files.append(labels)
        for r in read_vce(labels, problems=problems):
            key = key_path(r.video_id)
            if r.video_id in where_seen:
                problems.append(
                    Problem(
                        "duplicate_id", f"video {r.video_id!r} is also in {where_seen[r.video_id]}", str(labels), key
                    )
                )
                continue
            where_seen[r.video_id] = labels.name
            refs.append((_reroot(r.video_path, labels.parent, root), str(labels), key))
    return files, refs, len(refs)


def _load_v2v(path: Path, root: Path | None, problems: list[Problem]):
    if path.is_dir():
        splits = [s for s in ("train", "test", "listwise") if (path / f"{s}_labels.json").exists()]
        if not splits:
            problems.append(Problem("malformed", "no train/test/listwise_labels.json in the folder", str(path)))
        targets = [(path / f"{s}_labels.json", s) for s in splits]
    else:
        targets = [(path, path.stem.removesuffix("_labels"))]
    files, refs, split_of, n = [], [], {}, 0
    for labels, split in targets:
        files.append(labels)
        for r in read_v2v(labels, split=split, problems=problems):
            where = key_path("comparisons", r.index)
            clash = [v for v in r.video_ids if split_of.get(v, split) != split]
            if clash:
                other = split_of[clash[0]]
                msg = f"video {clash[0]!r} is also in the {other} split; V2V splits must not share videos"
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
        problems.append(Problem("malformed", "no annotation_*.pkl in the folder", str(path)))
    dirs = [root] if root is not None else None
    files, refs, where_seen = [], [], {}
    for pkl in pkls:
        files.append(pkl)
        for r in read_fiv2(pkl, video_dirs=dirs, problems=problems):
            key = key_path(r.file)
            if r.file in where_seen:
                problems.append(
                    Problem("duplicate_id", f"clip {r.file!r} is also in {where_seen[r.file]}", str(pkl), key)
                )
                continue
            where_seen[r.file] = pkl.name
            refs.append((r.video_path, str(pkl), key))
    return files, refs, len(refs)


def _load_captions(path: Path, root: Path | None, problems: list[Problem]):
    recs = read_emotion_captions(path, video_root=root, problems=problems)
    return [path], [(r.video_path, str(path), key_path(r.index)) for r in recs], len(recs)


def _load_msrvtt(path: Path, root: Path | None, problems: list[Problem]):
    recs = read_msrvtt_captions(path, video_root=root, problems=problems)
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
