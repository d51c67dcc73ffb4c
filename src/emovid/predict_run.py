"""``emovid predict`` on the batch engine: one video = one prediction record; CSV and JSONL at the end.

The record of each video (:meth:`emovid.predict.Predictor.predict_one`) is the engine's manifest line, so a run that
is stopped resumes where it was; rank 0 then writes ``predictions.csv`` (one row per video, in input order or
sorted by a column) and ``predictions.jsonl`` (every field, series included) atomically.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emovid.engine import Input, Job
from emovid.errors import ConfigError, InputNotFoundError, display_path

LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")
CSV_FILE = "predictions.csv"
JSONL_FILE = "predictions.jsonl"


def collect_videos(inputs: Sequence[str | os.PathLike]) -> tuple[list[Input], list[tuple[Path, str]]]:
    """Videos, folders (recursive) and list files → engine inputs (id = the path as given) and scan leftovers.

    A list file holds one path a line (``#`` comments), or is a CSV with a ``video_path``/``video``/``path`` column;
    relative paths are relative to the list file's folder.

    Raises:
        InputNotFoundError: an argument does not exist.
        ConfigError: nothing to score, or a folder without videos.
    """
    from emovid.batch import require_inputs, scan_folder
    from emovid.extract import _read_list
    from emovid.video import VIDEO_EXTENSIONS

    if not inputs:
        raise ConfigError("give at least one video, folder or list file to score")
    paths: list[Path] = []
    ignored: list[tuple[Path, str]] = []
    for arg in inputs:
        p = Path(arg)
        if not os.path.lexists(p):
            raise InputNotFoundError(p, "file or folder")
        if p.is_dir():
            scan = scan_folder(p, VIDEO_EXTENSIONS)
            require_inputs(scan.files, p, "video files", scan.ignored)
            ignored += scan.ignored
            paths += scan.files
        elif p.suffix.lower() in LIST_SUFFIXES:
            listed = _read_list(p)
            if not listed:
                raise ConfigError("lists no videos", p)
            paths += [q if q.is_absolute() else p.parent / q for q in map(Path, listed)]
        else:
            paths.append(p)  # a special file given by name fails as that input, with its reason
    seen: dict[str, Input] = {}
    for p in paths:
        seen.setdefault(os.fspath(p), Input(os.fspath(p), p))
    return list(seen.values()), ignored


class PredictJob(Job):
    """One video → :meth:`Predictor.predict_one` (on the rank's device); the record is the manifest line."""

    name = "predict"
    key = "video"
    guard = ("checkpoint_sha256", "timeline")

    def __init__(self, checkpoint: Path, predictor, timeline: bool, order: list[str]):
        self.checkpoint = Path(checkpoint)
        self.predictor = predictor
        self.timeline = timeline
        self.order = order
        self._sha = _weights_sha(self.checkpoint)

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "checkpoint_sha256": self._sha, "timeline": self.timeline}

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return "record" in entry

    def setup(self, device) -> None:
        import torch

        if torch.device(device) != torch.device(self.predictor.device):  # a rank of a multi-device run
            from emovid import load

            self.predictor = load(self.checkpoint, device=str(device), batch_size=self.predictor.batch_size)

    def load(self, item: Input) -> dict:
        return self.predictor.decode(item.path)  # decoding (and face detection) in the DataLoader workers

    def process(self, item: Input, loaded: dict) -> dict:
        rec = self.predictor.score(loaded, timeline=self.timeline)
        rec["video"] = item.id
        return rec

    def write(self, item: Input, result: dict, out: Path) -> dict:
        return {"record": result}

    def finish(self, out: Path, manifest: dict, failures: dict) -> None:
        self.records = [manifest[i]["record"] for i in self.order if i in manifest]


def _weights_sha(run: Path) -> str:
    from emovid.train import MODEL_FILE
    from emovid.utils.io import file_sha256

    return file_sha256(run / MODEL_FILE)[:16]


def write_predictions(out: Path, records: list[dict], predictor, sort: str | None = None) -> Path:
    """``predictions.csv`` (the predictor's columns) and ``predictions.jsonl``, both atomic; returns the CSV path."""
    from emovid.utils.io import atomic_open, dumps

    columns = list(predictor.columns)
    if sort is not None:
        if sort not in columns:
            raise ConfigError(f"--sort {sort!r} is not a column of this model's predictions ({', '.join(columns)})")

        numeric = [r for r in records if isinstance(r.get(sort), int | float)]
        other = [r for r in records if not isinstance(r.get(sort), int | float)]
        # Highest first (rank videos by intensity); text columns alphabetically; missing values last.
        records = sorted(numeric, key=lambda r: -r[sort]) + sorted(other, key=lambda r: str(r.get(sort) or "~"))
    csv_path = out / CSV_FILE
    with atomic_open(csv_path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in records:
            row = predictor.row(r)
            row["video"] = display_path(r["video"])
            w.writerow([_cell(row.get(c)) for c in columns])
    with atomic_open(out / JSONL_FILE, "w") as f:
        for r in records:
            f.write(dumps(r) + "\n")
    return csv_path


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return ""
    return v


def predict_inputs(
    checkpoint: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    timeline: bool = False,
    sort: str | None = None,
    device: str = "cpu",
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    num_workers: int = 2,
    batch_size: int = 16,
    engine_options: dict | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score ``inputs`` with the run ``checkpoint`` into ``output_dir`` (see the module notes).

    Returns:
        ``{"recorder", "csv", "jsonl", "records", "columns", "task", "describe", "output_dir"}``.
    """
    from emovid import load
    from emovid.engine import device_options
    from emovid.engine import run as run_batch

    items, ignored = collect_videos(inputs)
    predictor = load(checkpoint, device=device, batch_size=batch_size)
    if sort is not None and sort not in predictor.columns:
        raise ConfigError(f"--sort {sort!r} is not a column of this model ({', '.join(predictor.columns)})")
    if announce is not None:
        announce(predictor.describe())
    out = Path(output_dir)
    job = PredictJob(Path(checkpoint), predictor, timeline, [it.id for it in items])
    job.records = []
    rec = run_batch(
        job,
        items,
        out,
        overwrite=overwrite,
        strict=strict,
        ignored=ignored,
        num_workers=num_workers if len(items) > 1 else 0,
        progress=progress and len(items) > 1,
        **{**device_options(device), **(engine_options or {})},
    )
    result = {
        "recorder": rec,
        "output_dir": str(out),
        "task": predictor.task,
        "describe": predictor.describe(),
        "columns": list(predictor.columns),
        "csv": str(out / CSV_FILE),
        "jsonl": str(out / JSONL_FILE),
        "records": job.records,
    }
    if not rec.rank:
        write_predictions(out, job.records, predictor, sort)
    return result


__all__ = ["CSV_FILE", "JSONL_FILE", "PredictJob", "collect_videos", "predict_inputs", "write_predictions"]
