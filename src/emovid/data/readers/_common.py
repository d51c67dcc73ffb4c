"""Shared reading and validation helpers for the label readers.

Every reader works in one of two modes:

* **raise** (default, ``problems=None``): the first malformed row/key raises one
  :class:`~emovid.errors.LabelFormatError` whose message names the file and the 1-based line (CSV, header = line 1)
  or the JSON key path.
* **collect** (pass a list as ``problems``): every problem is appended there as a :class:`Problem` and the
  offending row/key is skipped, so ``emovid data check`` can report them all. Nothing is dropped without a
  matching entry in ``problems``.

Some kinds are **warnings** (:data:`WARNING_KINDS`): the data is usable but suspicious (annotators who disagree,
rows out of time order, a file with no records). A warning never drops a record and never raises: in raise mode
it is logged (``emovid.data`` logger), in collect mode it is appended like any other problem.

Files are hostile until read: every label file is checked to be a regular file before it is opened (a FIFO would
block forever), files over :data:`MAX_LABEL_BYTES` are refused, and JSON nesting, integer and memory limits
become ordinary problems naming the file instead of crashing the caller.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import numbers
import os
import reprlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from emovid.errors import LabelFormatError, SpecialFileError
from emovid.utils.paths import check_regular_file

log = logging.getLogger("emovid.data")

#: Problem kinds reported by readers and ``emovid data check``.
PROBLEM_KINDS = (
    "malformed",  # unparsable file, missing column, bad JSON, wrong type, NaN, empty value
    "out_of_range",  # a value outside its documented range
    "duplicate_id",  # the same video listed twice
    "unknown_id",  # an id that refers to nothing (e.g. not in metadata.json)
    "missing_video",  # the video file does not exist
    "unreadable_video",  # the video exists but FFmpeg cannot read it
    "missing_file",  # a file the dataset layout requires is absent (e.g. VCE train_labels.json, metadata.json)
    "unsafe_path",  # a path in the labels that leaves the dataset folder (absolute, or ``..`` past the root)
    "empty",  # a label file that holds no records (warning; ``data check`` makes it an error for required files)
    "contradiction",  # a V2V judgement that reverses an earlier one (warning: annotators disagree)
    "duplicate_comparison",  # a V2V comparison repeated verbatim (warning: it only re-weights the pair)
    "unordered",  # valence/arousal times that go backwards within a video (warning: rows are sorted on read)
)
#: Kinds that are warnings by default: reported, never raised, the record is kept.
WARNING_KINDS = frozenset({"empty", "contradiction", "duplicate_comparison", "unordered"})
#: Largest label file read (bytes). Real label files are a few MB; a bigger one is almost surely the wrong file,
#: and reading it whole could exhaust memory.
MAX_LABEL_BYTES = 1 << 30
#: Longest JSON integer literal kept as an ``int``; longer ones (Python refuses > 4300 digits, and anything past
#: ~309 digits overflows a float anyway) become :class:`HugeNumber` so the key can be reported.
_MAX_INT_DIGITS = 300


@dataclass(frozen=True)
class Problem:
    """One problem found in a label file.

    Attributes:
        kind: one of :data:`PROBLEM_KINDS`.
        message: what is wrong and, where useful, what to do.
        path: the file the problem is in.
        where: 1-based line number (CSV/text) or key path (JSON/pickle); ``None`` for the whole file.
        severity: ``"error"`` or ``"warning"``; defaults from ``kind`` (:data:`WARNING_KINDS`).
    """

    kind: str
    message: str
    path: str
    where: int | str | None = None
    severity: str | None = None

    def __post_init__(self):
        if self.severity is None:
            object.__setattr__(self, "severity", "warning" if self.kind in WARNING_KINDS else "error")

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        loc = self.path if self.where is None else f"{self.path}:{self.where}"
        return f"{loc}: {self.message}"

    def to_error(self) -> LabelFormatError:
        return LabelFormatError(self.message, self.path, self.where)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "path": self.path,
            "where": self.where,
            "message": self.message,
        }


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
        if self.problems is not None:
            self.problems.append(problem)
        elif problem.is_warning:
            log.warning("%s", problem)  # raise mode: a warning must not stop training, but must not be silent
        else:
            raise problem.to_error()

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
            p = clip(str(p))  # a hostile key can be megabytes long; the location must stay one readable line
            s = json.dumps(p) if any(c in p for c in ".[] ") or p.isdigit() else p
            out += f".{s}" if out else s
    return out


# ---- showing values in messages ------------------------------------------------------------------------------

_REPR = reprlib.Repr()
# reprlib bounds depth and length without recursing, so a deeply nested or huge value still prints in one short line
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def clip(text: str, limit: int = 80) -> str:
    """``text`` if at most ``limit`` characters, else its head and tail with the length (for one-line messages)."""
    return text if len(text) <= limit else f"{text[: limit - 20]}...{text[-12:]} ({len(text)} chars)"


class HugeNumber(float):
    """A JSON integer literal too long to be a usable number (±inf, keeping its text for the message).

    Python refuses ``int()`` of more than 4300 digits (a ``ValueError`` that would fail the whole file) and any
    integer past ~309 digits overflows a float; keeping it as an infinite float lets the field's own check report
    it with its key, like any other bad value.
    """

    def __new__(cls, text: str):
        self = super().__new__(cls, float("-inf") if text.startswith("-") else float("inf"))
        self.text = text
        return self

    def __repr__(self) -> str:
        digits = len(self.text.lstrip("-"))
        return f"{self.text[:12]}... ({digits} digits)"

    __str__ = __repr__


def show(value: Any) -> str:
    """A short, single-line ``repr`` of any value for a message (long strings, deep lists, huge ints shortened)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        # repr() of an int over 4300 digits raises; over ~300 it is unreadable anyway
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, HugeNumber):
        return repr(value)
    try:
        return _REPR.repr(value)
    except Exception:  # a value whose repr fails (e.g. a big int nested in a list) still needs a message
        return f"a {type(value).__name__}"


def _json_int(text: str) -> int | float:
    return int(text) if len(text) <= _MAX_INT_DIGITS else HugeNumber(text)


# ---- opening files -------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def read_bytes(rep: Reporter, what: str = "label file") -> bytes:
    """The whole file, after refusing what must not be opened or read whole.

    A missing file raises :class:`~emovid.errors.InputNotFoundError` in both modes. A folder, FIFO, device or
    socket raises :class:`~emovid.errors.SpecialFileError` in raise mode (and is a fatal problem in collect mode)
    *before* anything opens it, so a FIFO cannot block the reader. Files over :data:`MAX_LABEL_BYTES`, files that
    cannot be read and files too big for memory are fatal problems.
    """
    try:
        check_regular_file(rep.path, what)
    except SpecialFileError as e:
        if not rep.collecting:
            raise
        rep.fatal(e.message)
    size = os.path.getsize(rep.path)
    if size > MAX_LABEL_BYTES:
        rep.fatal(
            f"is {_size(size)}, over the {_size(MAX_LABEL_BYTES)} limit for label files; "
            "check that this is the label file, or split it"
        )
    try:
        with open(rep.path, "rb") as f:
            return f.read()
    except MemoryError:
        rep.fatal(f"is too large to read into memory ({_size(size)})")
    except OSError as e:
        rep.fatal(f"cannot read the {what} ({e.strerror or e})")
    raise AssertionError("unreachable")  # pragma: no cover  (rep.fatal always raises)


def read_text(rep: Reporter) -> str:
    """The file's text (UTF-8, BOM tolerated); missing, special, non-UTF-8 and empty files are fatal."""
    data = read_bytes(rep)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        rep.fatal(f"not valid UTF-8 (byte {e.start}); re-save the file as UTF-8", line)
    if not text.strip():
        rep.fatal("file is empty")
    return text


def read_json(rep: Reporter) -> Any:
    """Parse a JSON file; every way parsing can fail is fatal and names the file (and line, when known).

    Used by every JSON reader so that no JSON input can escape as anything but a problem: syntax errors (with
    line and column), nesting deeper than Python's recursion limit, integer literals too long for ``int``
    (kept as :class:`HugeNumber` and reported at their key by the field's check), and running out of memory.
    """
    text = read_text(rep)
    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as e:
        rep.fatal(f"invalid JSON: {e.msg} (column {e.colno})", e.lineno)
    except RecursionError:
        rep.fatal("JSON nested too deeply to read; label files are at most a few levels deep, check the file")
    except MemoryError:
        rep.fatal("JSON too large to load into memory")
    except ValueError as e:  # any other limit the decoder enforces (e.g. number conversion)
        rep.fatal(f"invalid JSON: {clip(str(e), 120)}")


def iter_csv(rep: Reporter, required: Sequence[str], optional: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, row)`` for each data row of a CSV file with a header.

    ``line`` is the 1-based line where the row starts (the header is line 1). A missing required column is
    fatal; a row with the wrong number of fields or a NUL byte is reported and skipped; a header with no data
    rows is reported as ``empty`` (a warning). Values are stripped strings.
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
        rep.fatal(
            f"missing column(s) {', '.join(missing)}; the header has {clip(', '.join(header), 200) or 'nothing'}", 1
        )
    dup = sorted({h for h in header if header.count(h) > 1 and h in (*required, *optional)})
    if dup:
        rep.fatal(f"column(s) {', '.join(dup)} appear more than once in the header", 1)
    line = reader.line_num + 1
    rows = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            rep.fatal(f"unparsable CSV: {e}", reader.line_num)
        start, line = line, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue  # blank lines carry no record
        rows += 1
        if any("\x00" in f for f in fields):
            # Python's csv accepts NUL since 3.11, but no label holds one: the file is binary, UTF-16 or corrupt
            rep("malformed", "the row contains a NUL byte; is the file UTF-16 or binary? re-save it as UTF-8", start)
            continue
        if len(fields) != len(header):
            rep("malformed", f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}", start)
            continue
        yield start, {h: f.strip() for h, f in zip(header, fields, strict=False)}
    if not rows:
        rep("empty", "the file has a header but no data rows; add rows or give the right file")


def parse_float(
    rep: Reporter,
    value: Any,
    where: int | str,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    """Parse a finite number in ``[lo, hi]``; report and return ``None`` otherwise.

    Accepts numbers and numeric strings (CSV); rejects booleans, empty strings, NaN, infinities and numbers
    too large for a float.
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
            rep("malformed", f"{name}: {show(value)} is not a number", where)
            return None
    elif isinstance(value, HugeNumber):
        rep("malformed", f"{name}: {value!r} is too large to be a number", where)
        return None
    elif isinstance(value, numbers.Real):
        try:
            x = float(value)
        except OverflowError:  # an int (e.g. from a pickle) past float range
            rep("malformed", f"{name}: {show(value)} is too large to be a number", where)
            return None
    else:
        rep("malformed", f"{name}: expected a number, got {type(value).__name__}", where)
        return None
    if not math.isfinite(x):
        rep("malformed", f"{name}: {clip(str(value), 40)} is not a finite number", where)
        return None
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        rep("out_of_range", f"{name}: {x:g} is outside [{lo:g}, {hi:g}]", where)
        return None
    return x


def require_str(rep: Reporter, value: Any, where: int | str, name: str) -> str | None:
    """A non-empty string without NUL characters, or report and return ``None``."""
    if not isinstance(value, str):
        rep("malformed", f"{name}: expected a string, got {type(value).__name__}", where)
        return None
    if not value.strip():
        rep("malformed", f"{name}: empty value", where)
        return None
    if "\x00" in value:  # a JSON "\u0000": no id or file name can hold it, and OS calls reject it
        rep("malformed", f"{name}: {show(value)} contains a NUL character", where)
        return None
    return value


def contained(rep: Reporter, rel: str, where: int | str, name: str) -> str | None:
    """``rel`` if it is a relative path that stays inside the dataset folder; else report ``unsafe_path``.

    The check is lexical (nothing is opened or resolved): absolute paths, drive or UNC prefixes and ``..`` steps
    that climb above the folder are refused, backslashes counting as separators. Symlinks inside the dataset are
    the user's own choice and are followed as usual.
    """
    win = PureWindowsPath(rel)
    if PurePosixPath(rel).is_absolute() or win.drive or win.root:
        rep("unsafe_path", f"{name}: {show(rel)} is an absolute path; give it relative to the dataset folder", where)
        return None
    depth = 0
    for part in rel.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                rep("unsafe_path", f"{name}: {show(rel)} leaves the dataset folder; keep files inside it", where)
                return None
        elif part not in ("", "."):
            depth += 1
    return rel


def resolve(root: str | os.PathLike | None, rel: str) -> Path:
    """``rel`` joined to ``root`` (absolute ``rel`` kept as is); not checked for existence."""
    p = Path(rel)
    if p.is_absolute() or root is None:
        return p
    return Path(root) / p


__all__ = [
    "MAX_LABEL_BYTES",
    "PROBLEM_KINDS",
    "WARNING_KINDS",
    "HugeNumber",
    "Problem",
    "Reporter",
    "clip",
    "contained",
    "iter_csv",
    "key_path",
    "parse_float",
    "read_bytes",
    "read_json",
    "read_text",
    "require_str",
    "resolve",
    "run_reader",
    "show",
]
