"""Shared reading and validation helpers for the label readers.

Every reader works in one of two modes:

* **raise** (default, ``problems=None``): the first malformed row/key raises one
  :class:`~emovid.errors.LabelFormatError` whose message names the file and the 1-based line (CSV, header = line 1)
  or the JSON key path.
* **collect** (pass a list as ``problems``): every problem is appended there as a :class:`Problem` and the
  offending row/key is skipped, so ``emovid data check`` can report them all. Nothing is dropped without a
  matching entry in ``problems``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emovid.errors import InputNotFoundError, LabelFormatError

#: Problem kinds reported by readers and ``emovid data check``.
PROBLEM_KINDS = (
    "malformed",  # unparsable file, missing column, bad JSON, wrong type, NaN, empty value
    "out_of_range",  # a value outside its documented range
    "duplicate_id",  # the same video listed twice
    "unknown_id",  # an id that refers to nothing (e.g. not in metadata.json)
    "missing_video",  # the video file does not exist
    "unreadable_video",  # the video exists but FFmpeg cannot read it
)


@dataclass(frozen=True)
class Problem:
    """One problem found in a label file.

    Attributes:
        kind: one of :data:`PROBLEM_KINDS`.
        message: what is wrong and, where useful, what to do.
        path: the file the problem is in.
        where: 1-based line number (CSV/text) or key path (JSON/pickle); ``None`` for the whole file.
    """

    kind: str
    message: str
    path: str
    where: int | str | None = None

    def __str__(self) -> str:
        loc = self.path if self.where is None else f"{self.path}:{self.where}"
        return f"{loc}: {self.message}"

    def to_error(self) -> LabelFormatError:
        return LabelFormatError(self.message, self.path, self.where)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "where": self.where, "message": self.message}


class Reporter:
    """Raises at the first problem (``problems is None``) or appends each to ``problems``.

    Args:
        path: the label file being read.
        problems: list to collect into, or ``None`` to raise.
    """

    def __init__(self, path: str | os.PathLike, problems: list[Problem] | None = None):
        self.path = os.fspath(path)
        self.problems = problems

    @property
    def collecting(self) -> bool:
        return self.problems is not None

    def __call__(self, kind: str, message: str, where: int | str | None = None) -> None:
        problem = Problem(kind, message, self.path, where)
        if self.problems is None:
            raise problem.to_error()
        self.problems.append(problem)

    def fatal(self, message: str, where: int | str | None = None) -> None:
        """A problem after which the file cannot be read further; always stops the reader."""
        problem = Problem("malformed", message, self.path, where)
        if self.problems is not None:
            self.problems.append(problem)
        raise _Stop(problem)


class _Stop(Exception):
    """Internal: a fatal problem already recorded; the reader returns what it has (collect) or raises."""

    def __init__(self, problem: Problem):
        self.problem = problem


def run_reader(fn, rep: Reporter, *args, **kwargs):
    """Call ``fn(rep, *args)``; a fatal problem raises in raise mode and yields an empty result in collect mode."""
    try:
        return fn(rep, *args, **kwargs)
    except _Stop as e:
        if rep.collecting:
            return []
        raise e.problem.to_error() from None


def key_path(*parts: Any) -> str:
    """Render a JSON location like ``"00003".emotions.Anger`` or ``comparisons[4][1]``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            s = json.dumps(str(p)) if any(c in str(p) for c in ".[] ") or str(p).isdigit() else str(p)
            out += f".{s}" if out else s
    return out


# ---- text, CSV, JSON -----------------------------------------------------------------------------------------


def read_text(rep: Reporter) -> str:
    """The file's text (UTF-8, BOM tolerated); missing, non-UTF-8 and empty files are reported as fatal."""
    path = Path(rep.path)
    if not path.exists():
        raise InputNotFoundError(path, "label file")
    if path.is_dir():
        rep.fatal("is a folder, expected a label file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        rep.fatal(f"not valid UTF-8 (byte {e.start}); re-save the file as UTF-8", line)
    if not text.strip():
        rep.fatal("file is empty")
    return text


def read_json(rep: Reporter) -> Any:
    """Parse a JSON file; a syntax error is fatal and names its line and column."""
    text = read_text(rep)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        rep.fatal(f"invalid JSON: {e.msg} (column {e.colno})", e.lineno)


def iter_csv(rep: Reporter, required: Sequence[str], optional: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, row)`` for each data row of a CSV file with a header.

    ``line`` is the 1-based line where the row starts (the header is line 1). A missing required column is
    fatal; a row with the wrong number of fields is reported and skipped. Values are stripped strings.
    """
    text = read_text(rep)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        rep.fatal(f"unparsable CSV header: {e}", 1)
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        rep.fatal(f"missing column(s) {', '.join(missing)}; the header has {', '.join(header) or 'nothing'}", 1)
    dup = sorted({h for h in header if header.count(h) > 1 and h in (*required, *optional)})
    if dup:
        rep.fatal(f"column(s) {', '.join(dup)} appear more than once in the header", 1)
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            rep.fatal(f"unparsable CSV: {e}", reader.line_num)
        start, line = line, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue  # blank lines carry no record
        if len(fields) != len(header):
            rep("malformed", f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}", start)
            continue
        yield start, {h: f.strip() for h, f in zip(header, fields, strict=False)}


def parse_float(
    rep: Reporter,
    value: Any,
    where: int | str,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    """Parse a finite number in ``[lo, hi]``; report and return ``None`` otherwise.

    Accepts numbers and numeric strings (CSV); rejects booleans, empty strings, NaN and infinities.
    """
    if isinstance(value, bool) or value is None:
        rep("malformed", f"{name}: expected a number, got {json.dumps(value)}", where)
        return None
    if isinstance(value, str):
        if not value.strip():
            rep("malformed", f"{name}: empty value", where)
            return None
        try:
            x = float(value)
        except ValueError:
            rep("malformed", f"{name}: {value!r} is not a number", where)
            return None
    elif isinstance(value, numbers.Real):
        x = float(value)
    else:
        rep("malformed", f"{name}: expected a number, got {type(value).__name__}", where)
        return None
    if not math.isfinite(x):
        rep("malformed", f"{name}: {value} is not a finite number", where)
        return None
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        rep("out_of_range", f"{name}: {x:g} is outside [{lo:g}, {hi:g}]", where)
        return None
    return x


def require_str(rep: Reporter, value: Any, where: int | str, name: str) -> str | None:
    """A non-empty string, or report and return ``None``."""
    if not isinstance(value, str):
        rep("malformed", f"{name}: expected a string, got {type(value).__name__}", where)
        return None
    if not value.strip():
        rep("malformed", f"{name}: empty value", where)
        return None
    return value


def resolve(root: str | os.PathLike | None, rel: str) -> Path:
    """``rel`` joined to ``root`` (absolute ``rel`` kept as is); not checked for existence."""
    p = Path(rel)
    if p.is_absolute() or root is None:
        return p
    return Path(root) / p


__all__ = [
    "PROBLEM_KINDS",
    "Problem",
    "Reporter",
    "iter_csv",
    "key_path",
    "parse_float",
    "read_json",
    "read_text",
    "require_str",
    "resolve",
    "run_reader",
]
