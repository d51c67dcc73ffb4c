"""What every per-input batch command shares besides the engine: input scans, the summary and its exit rule.

``emovid analyze``, ``extract``, ``predict``, ``faces embed`` and ``index build`` run on :mod:`emovid.engine`, which
records any per-input exception as that input's failure and goes on. This module holds the pieces around it:

* folder scans (:func:`scan_folder`) take regular files with a wanted extension and say what they left out
  (folders, FIFOs, devices or sockets named like media, broken links) — a FIFO is never opened;
* one-line descriptions of any exception (:func:`describe_error`) and of a reader's damage record
  (:func:`damage_line`); :class:`DamagedVideoError` for damaged inputs under ``--strict``;
* :class:`BatchRecorder`: the counts, failures and warnings of a run, its summary (``N done, N skipped, N failed
  of M videos``), the first few failures and warnings with file and reason, and exit code 1 when any input failed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emovid.errors import ConfigError, EmovidError, VideoError, display_path
from emovid.utils.paths import file_kind

#: Failures and warnings printed under the summary line (the rest are in ``failures.jsonl``).
SHOWN = 5
#: Set by ``emovid --debug``: unexpected per-input exceptions are raised (with their traceback), not recorded.
DEBUG = False


class DamagedVideoError(VideoError):
    """A damaged video under ``--strict``: decodable in part, refused as a whole."""


@dataclass
class ScanResult:
    """Files found under a folder, and the entries that looked like inputs but were left out (path, reason)."""

    files: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def scan_folder(root: str | os.PathLike, extensions: Iterable[str], hidden: bool = False) -> ScanResult:
    """Regular files below ``root`` whose extension is in ``extensions`` (case-insensitive), sorted.

    Hidden entries (names starting with ``.``, e.g. our own temporary files) are not visited unless
    ``hidden``. Entries with a wanted extension that are not regular files (folders, FIFOs, devices, sockets,
    broken symbolic links) are returned in ``ignored`` with the reason; they are never opened. Symbolic links to
    folders are not followed (no cycles).
    """
    exts = {e.lower() for e in extensions}
    res = ScanResult()
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
        except OSError as e:
            res.ignored.append((folder, f"cannot list the folder ({e.strerror or e})"))
            continue
        for entry in entries:
            if entry.name.startswith(".") and not hidden:
                continue
            path = Path(entry.path)
            wanted = path.suffix.lower() in exts
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                    if wanted:
                        res.ignored.append((path, "is a folder"))
                    continue
                if not wanted:
                    continue
                mode = entry.stat(follow_symlinks=True).st_mode
            except FileNotFoundError:
                if wanted:
                    res.ignored.append((path, "is a broken symbolic link"))
                continue
            except OSError as e:
                if wanted:
                    res.ignored.append((path, f"cannot be read ({e.strerror or e})"))
                continue
            if stat.S_ISREG(mode):
                res.files.append(path)
            else:
                res.ignored.append((path, f"is a {file_kind(mode)}, not a regular file"))
    res.files.sort(key=lambda p: os.fsencode(p))
    res.ignored.sort(key=lambda x: os.fsencode(x[0]))
    return res


def describe_error(exc: BaseException) -> str:
    """One line for any exception: an :class:`EmovidError`'s own message, else its type and text."""
    if isinstance(exc, EmovidError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected {type(exc).__name__}{': ' + text if text else ''} (rerun with --debug and report it)"


def damage_line(damage: dict[str, Any] | None) -> str | None:
    """``"file holds 42 of 60 declared frames; ..."`` from a reader's damage record, or ``None`` when clean."""
    if not damage:
        return None
    reasons = damage.get("reasons") or []
    return "; ".join(str(r) for r in reasons) or "damaged"


class BatchRecorder:
    """Counts, failures, warnings and summary of one batch run (filled in by :func:`emovid.engine.run`).

    Args:
        failures_path: the run's ``failures.jsonl`` (named in the summary).
        unit: what the inputs are, for the summary (``videos``, ``inputs``).
        key: the field naming the input in ``failures.jsonl`` (``input`` or ``video``).
    """

    def __init__(self, failures_path: str | os.PathLike | None, unit: str = "inputs", key: str = "input"):
        self.failures_path = Path(failures_path) if failures_path is not None else None
        self.unit = unit
        self.key = key
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.failures: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.ignored: list[tuple[Path, str]] = []
        self.num_damaged = 0
        self.rank = 0  # a distributed run's other ranks count their own share only

    # ---- recording -----------------------------------------------------------------------------------------

    def ignore(self, entries: Sequence[tuple[Path, str]]) -> None:
        """Scan-time leftovers (special files named like inputs): reported as warnings, never opened."""
        self.ignored.extend(entries)

    def warn(self, input: str | os.PathLike, message: str) -> None:
        self.warnings.append(f"{display_path(input)}: {message}")

    # ---- reporting -----------------------------------------------------------------------------------------

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def summary_line(self, where: str | os.PathLike | None = None, detail: str = "") -> str:
        """``N done, N skipped, N failed of M videos DETAIL -> WHERE; failures: PATH``."""
        damaged = f" ({self.num_damaged} damaged, see warnings)" if self.num_damaged else ""
        line = f"{self.done} done{damaged}, {self.skipped} skipped, {self.failed} failed of {self.total} {self.unit}"
        line += detail
        if where is not None:
            line += f" -> {display_path(where)}"
        if self.failures and self.failures_path is not None:
            line += f"; failures: {display_path(self.failures_path)}"
        return line

    def error_lines(self, shown: int = SHOWN) -> list[str]:
        """The first few failures, one line each naming the input and the reason."""
        out = []
        for rec in self.failures[:shown]:
            text = rec["error"]
            name = display_path(rec[self.key])
            out.append(text if name in text else f"{name}: {text}")
        if len(self.failures) > shown:
            more = f" (see {display_path(self.failures_path)})" if self.failures_path else ""
            out.append(f"... and {len(self.failures) - shown} more failed{more}")
        return out

    def warning_lines(self, shown: int = SHOWN) -> list[str]:
        """The first few entries a folder scan left out, then the first few other warnings (damaged inputs)."""
        out = [f"{display_path(p)}: not read: {reason}" for p, reason in self.ignored[:shown]]
        if len(self.ignored) > shown:
            out.append(f"... and {len(self.ignored) - shown} more entries not read")
        out += self.warnings[:shown]
        if len(self.warnings) > shown:
            out.append(f"... and {len(self.warnings) - shown} more warnings")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": str(self.failures_path) if self.failures and self.failures_path else None,
            "failure_records": list(self.failures),
            "warnings": [f"{display_path(p)}: not read: {r}" for p, r in self.ignored] + list(self.warnings),
        }


def require_inputs(
    found: Sequence[Any],
    where: str | os.PathLike,
    what: str,
    ignored: Sequence[tuple[Path, str]],
    how: str = "",
) -> None:
    """Raise one clear error when a scan found nothing, naming what it left out (and ``how`` it looked)."""
    if found:
        return
    notes = [how] if how else []
    if ignored:
        first = "; ".join(f"{display_path(p)} {r}" for p, r in ignored[:3])
        notes.append(f"left out: {first}{' ...' if len(ignored) > 3 else ''}")
    extra = f" ({'; '.join(notes)})" if notes else ""
    raise ConfigError(f"{display_path(where)}: no {what} found{extra}")


__all__ = [
    "SHOWN",
    "BatchRecorder",
    "DamagedVideoError",
    "ScanResult",
    "damage_line",
    "describe_error",
    "require_inputs",
    "scan_folder",
]
