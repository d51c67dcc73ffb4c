"""The weights lock file: the sha256 of every downloaded file that has no published checksum.

Most published weights come without a checksum. So that a file cannot change unnoticed (a corrupted cache, a file
replaced on disk, new weights uploaded under the same name), the first time emovid downloads or finds such a file
it records the file's sha256 in ``$EMOVID_HOME/weights/weights.lock.json``; every later load compares the file
with that record and refuses it, in one line naming the file and what to do, when they differ. A weight source
that declares its ``sha256`` is checked against that instead and never enters the lock.

The lock lives next to the weights, so ``emovid weights fetch --to DIR`` carries it to an offline machine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from emovid.errors import ModelError
from emovid.models.hub_env import cache_dir

log = logging.getLogger("emovid.models.hub")

LOCK_NAME = "weights.lock.json"
_VERSION = 1
_lock = threading.Lock()
# (path, size, mtime_ns) of files already checked in this process: loading a model twice hashes it once
_checked: dict[tuple[str, int, int], str] = {}


def lock_path() -> Path:
    """``$EMOVID_HOME/weights/weights.lock.json`` (follows :func:`~emovid.models.hub_env.use_home`)."""
    return cache_dir() / LOCK_NAME


def _sha256(path: str | os.PathLike) -> str:
    from emovid.utils.io import file_sha256

    return file_sha256(path)


def _read(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(
            f"not a readable weights lock file ({type(e).__name__}); delete it to record the checksums afresh", path
        ) from e
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise ModelError("not a weights lock file (no 'files' mapping); delete it to record the checksums afresh", path)
    return files


def _write(path: Path, files: dict[str, dict]) -> None:
    from emovid.utils.io import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        json.dump({"version": _VERSION, "files": dict(sorted(files.items()))}, f, indent=1)
        f.write("\n")


def recorded_sha256(key: str) -> str | None:
    """The sha256 recorded for ``key`` in the lock file, or ``None``."""
    entry = _read(lock_path()).get(key)
    return entry.get("sha256") if isinstance(entry, dict) else None


def check_locked(path: str | os.PathLike, key: str, shown: str | os.PathLike | None = None) -> str:
    """Verify ``path`` against the sha256 recorded for ``key``, recording it when there is none yet.

    Args:
        path: the file to check (may be a download not yet moved to its place).
        key: what the file is, independent of where it is kept: its URL (without query) or ``hf:REPO/FILE``.
        shown: the file named in the error (default ``path``).

    Returns:
        The file's sha256.

    Raises:
        ModelError: the file differs from the recorded sha256 (one line: the file, both checksums, what to do).
    """
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    lock = lock_path()
    with _lock:
        digest = _checked.get(memo) or _sha256(p)
        files = _read(lock)
        entry = files.get(key)
        recorded = entry.get("sha256") if isinstance(entry, dict) else None
        if recorded is None:
            files[key] = {"sha256": digest, "bytes": st.st_size}
            try:
                _write(lock, files)
            except OSError as e:  # a read-only weights folder (shared on a cluster): the file is still usable
                log.warning("cannot record the sha256 of %s in %s (%s)", shown or p, lock, e.strerror or e)
        elif recorded != digest:
            _checked.pop(memo, None)
            raise ModelError(
                f"sha256 {digest[:16]}... differs from {recorded[:16]}... recorded in {lock} when this file was first "
                f"downloaded ({key}): the copy is damaged or was replaced. Delete the file and fetch it again; if the "
                f"new file is meant (new weights upstream), delete the {key!r} entry from {LOCK_NAME}",
                shown or p,
            )
        _checked[memo] = digest
    return digest


def forget_checks() -> None:
    """Forget which files this process has already verified (the next load hashes them again)."""
    with _lock:
        _checked.clear()


__all__ = ["LOCK_NAME", "check_locked", "forget_checks", "lock_path", "recorded_sha256"]
