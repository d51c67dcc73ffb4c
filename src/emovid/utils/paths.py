"""File names from anywhere: refuse special files before opening them, print any name, keep output names short.

A path a user hands over may be a FIFO (opening it blocks forever), a device, a socket or a folder named like a
video; its name may hold any bytes the OS allows (Python turns undecodable bytes into lone surrogates,
``os.fsdecode``), and it may be up to 255 bytes long, so ``NAME + suffix`` can overflow the file-name limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from emovid.errors import EmovidError, InputNotFoundError, SpecialFileError
from emovid.errors import display_path as display

#: Longest file name (bytes) most file systems accept.
NAME_MAX = 255


def file_kind(mode: int) -> str:
    """``regular``, ``folder``, ``FIFO``, ``character device``, ``block device``, ``socket`` or ``special file``."""
    for test, name in (
        (stat.S_ISREG, "regular"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def check_regular_file(path: str | os.PathLike, what: str = "file") -> str:
    """Return ``path`` (as ``str``) if it is a regular file (symlinks followed), before anything opens it.

    Raises:
        InputNotFoundError: nothing there (or a dangling symlink).
        SpecialFileError: a folder, FIFO, device or socket — opening a FIFO would block forever.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputNotFoundError(p, what) from None
    except OSError as e:
        raise EmovidError(f"cannot read the {what} ({e.strerror or e})", p) from None
    kind = file_kind(st.st_mode)
    if kind != "regular":
        raise SpecialFileError(f"is a {kind}, not a regular {what}; give a regular file", p)
    return p


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` if its encoded length fits ``limit`` bytes; else a shortened stem + hash that keeps the suffixes.

    Deterministic, so a rerun finds the same output; different long names get different results.
    """
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:16]
    stem, dot, suffix = name.partition(".")
    suffix = dot + suffix if len(os.fsencode(dot + suffix)) <= 32 else ""
    room = limit - len(os.fsencode(suffix)) - len(digest) - 1
    head = os.fsencode(stem)[: max(room, 0)]
    return os.fsdecode(head.decode("utf-8", "ignore").encode("utf-8")) + "~" + digest + suffix


def fit_path(path: str | os.PathLike, limit: int = NAME_MAX) -> Path:
    """``path`` with every component passed through :func:`fit_name`."""
    p = Path(path)
    parts = [fit_name(part, limit) if part not in ("/", "..", ".") else part for part in p.parts]
    return Path(*parts) if parts else p


__all__ = ["NAME_MAX", "SpecialFileError", "check_regular_file", "display", "file_kind", "fit_name", "fit_path"]
