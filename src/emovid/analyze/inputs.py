"""What ``emovid analyze`` reads: files and folders expanded into inputs with unique, file-system-safe output keys."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emovid.errors import ConfigError, InputNotFoundError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"})
NAME_MAX = 255


@dataclass(frozen=True)
class InputItem:
    """One file to analyse: its path, kind (``video``/``image``) and output key (relative name without suffix)."""

    path: Path
    kind: str
    key: str


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"


def collect_inputs(
    inputs: Sequence[str | os.PathLike], ignored: list[tuple[Path, str]] | None = None
) -> list[InputItem]:
    """Expand files and folders (recursively: video and image files only) into items with unique output keys.

    Output keys mirror paths below a given folder (``talks/a/x.mp4`` -> ``a/x``); files given directly use their
    stem. A key already taken (``x.mp4`` beside ``x.jpg``, or two ``x.mp4`` from different arguments) gets the
    extension folded in (``x_jpg``) or a numeric suffix. Each part of a key fits a file name with the longest
    output suffix (:func:`emovid.utils.paths.fit_name`).

    Args:
        ignored: if given, receives the folder entries named like media that are not regular files (folders,
            FIFOs, devices, sockets, broken links), which are never opened.

    Raises:
        InputNotFoundError: an argument does not exist.
        ConfigError: no input given, or folders that hold no video or image.
    """
    from emovid.batch import require_inputs, scan_folder
    from emovid.utils.paths import fit_name
    from emovid.video import VIDEO_EXTENSIONS

    if not inputs:
        raise ConfigError("give at least one video, image or folder to analyse")
    media = {e.lower() for e in VIDEO_EXTENSIONS} | IMAGE_EXTENSIONS
    items: list[InputItem] = []
    taken: set[str] = set()
    left_out: list[tuple[Path, str]] = []

    def add(path: Path, rel: Path) -> None:
        base = "/".join(fit_name(part, NAME_MAX - len(".faces.jpg") - 12) for part in rel.with_suffix("").parts)
        key = base
        if key in taken:
            key = f"{base}_{rel.suffix.lstrip('.').lower()}" if rel.suffix else base
        n = 2
        while key in taken:
            key = f"{base}-{n}"
            n += 1
        taken.add(key)
        items.append(InputItem(path, _kind(path), key))

    for arg in inputs:
        p = Path(arg)
        if not os.path.lexists(p):
            raise InputNotFoundError(p, "file or folder")
        if p.is_dir():
            scan = scan_folder(p, media)
            left_out += scan.ignored
            require_inputs(scan.files, p, "video or image files", scan.ignored)
            for f in scan.files:
                add(f, f.relative_to(p))
        else:
            add(p, Path(p.name))  # a special file given by name fails as that input, with its reason
    if ignored is not None:
        ignored.extend(left_out)
    return items


__all__ = ["IMAGE_EXTENSIONS", "InputItem", "collect_inputs"]
