"""The one batch engine under every per-input command (``analyze``, ``extract``, ``faces embed``, ``predict``).

A command describes only what is its own — a :class:`Job`: how to read one input (in DataLoader workers), how to
process it (on the rank's device), how to write its outputs, and what to do once all inputs are done. The engine
does the rest, the same way for every command:

1. **inputs**: the command lists them (:func:`emovid.batch.scan_folder` for folders); each has an ``id`` (its
   relative path, the key of the manifest) and a ``path``;
2. **resume**: inputs whose manifest line exists and whose outputs are on disk are skipped; a rerun with other
   settings (:meth:`Job.settings`) is refused unless ``overwrite``; failed inputs are retried;
3. **shard**: a Lightning ``Trainer.predict`` over a dataset of the remaining inputs. On many GPUs/nodes (DDP,
   torchrun, SLURM) Lightning gives each rank its share with an unrepeated sampler;
4. **process**: ``load`` in the DataLoader workers, ``process`` in ``predict_step``; *any* exception of one input
   becomes that input's failure (``--debug`` re-raises bugs); damaged-but-readable inputs are processed with a
   warning and a ``damaged`` record, or fail under ``strict``;
5. **write**: ``write`` puts the input's files in place atomically, then one line is appended to that rank's
   journal ``manifest.rank{R}.jsonl`` (failures: ``failures.rank{R}.jsonl``). A rank never writes a file another
   process writes (safe on network file systems);
6. **merge**: after a barrier rank 0 folds every journal into ``manifest.jsonl`` and ``failures.jsonl`` (one line
   per input, the latest wins; inputs that have since succeeded leave ``failures.jsonl``), then calls
   :meth:`Job.finish` (a report, a CSV, an index) and returns one :class:`~emovid.batch.BatchRecorder` summary:
   ``N done, N skipped, N failed``, exit code 1 when any input failed.

A run killed at any point leaves only whole files; the next run reads the journals as finished work.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import Dataset

from emovid.batch import BatchRecorder, DamagedVideoError, damage_line, describe_error
from emovid.errors import ConfigError, display_path
from emovid.utils.io import append_jsonl, atomic_open, dumps, read_jsonl

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"


@dataclass(frozen=True)
class Input:
    """One input of a batch run: ``id`` is its key in the manifest (a relative path), ``path`` the file."""

    id: str
    path: Path


class Job:
    """The part of a batch command that is its own; the engine calls these (see the module notes).

    Attributes:
        name: the command, for messages.
        unit: what the inputs are, for the summary (``videos``, ``inputs``).
        key: the field naming the input in ``manifest.jsonl`` / ``failures.jsonl``.
        guard: settings keys a rerun must match (see :meth:`settings`).
    """

    name = "batch"
    unit = "videos"
    key = "video"
    guard: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """Fields every manifest line carries (model, weights hash, sampler, ...)."""
        return {}

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        """Whether a finished input's files are still on disk (else it is redone)."""
        return True

    def load(self, item: Input) -> Any:
        """Read one input in a DataLoader worker (decoding); runs on CPU, must be picklable-free of models."""
        return None

    def setup(self, device: torch.device) -> None:
        """Build what ``process`` needs on this rank (models on ``device``); called once per rank."""

    def modules(self) -> list[nn.Module]:
        """Models the engine should move to the rank's device (built in ``__init__``)."""
        return []

    def process(self, item: Input, loaded: Any) -> Any:
        """The work on one input; returns what :meth:`write` needs."""
        raise NotImplementedError

    def damage(self, result: Any) -> dict | None:
        """The damage record of a processed input (``None`` when clean)."""
        return result.get("damaged") if isinstance(result, dict) else None

    def write(self, item: Input, result: Any, out: Path) -> dict[str, Any]:
        """Put the input's outputs in place (atomically) and return its manifest fields."""
        return {}

    def finish(self, out: Path, manifest: dict[str, dict], failures: dict[str, dict]) -> None:
        """Rank 0, after every rank finished and the journals are merged (reports, CSVs, indexes)."""


# ---- journals -----------------------------------------------------------------------------------------------


def _journals(out: Path, stem: str) -> list[Path]:
    def rank(p: Path) -> int:
        try:
            return int(p.name[len(stem) + 5 : -len(".jsonl")])
        except ValueError:
            return 1 << 30

    return sorted(out.glob(f"{stem}.rank*.jsonl"), key=rank)


def _read(out: Path, stem: str, key: str) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for path in [out / f"{stem}.jsonl", *_journals(out, stem)]:
        for rec in read_jsonl(path):
            if key in rec:
                entries[rec[key]] = rec
    return entries


def read_manifest(output_dir: str | os.PathLike, key: str = "video") -> dict[str, dict]:
    """Finished inputs of an output folder, ``{id: entry}``: ``manifest.jsonl`` plus unmerged rank journals."""
    return _read(Path(output_dir), "manifest", key)


def read_failures(output_dir: str | os.PathLike, key: str = "video") -> dict[str, dict]:
    """Failed inputs of an output folder, ``{id: entry}`` (``failures.jsonl`` plus unmerged journals)."""
    return _read(Path(output_dir), "failures", key)


def merge_journals(output_dir: str | os.PathLike, key: str = "video") -> tuple[int, int]:
    """Fold the rank journals into ``manifest.jsonl`` and ``failures.jsonl`` (rank 0, after all ranks finished).

    Returns:
        ``(inputs in the manifest, inputs in failures.jsonl)``.
    """
    out = Path(output_dir)
    done = read_manifest(out, key)
    failed = {v: r for v, r in read_failures(out, key).items() if v not in done}
    journals = _journals(out, "manifest") + _journals(out, "failures")
    if journals or (out / MANIFEST).exists() or done:
        with atomic_open(out / MANIFEST) as f:
            for v in sorted(done, key=os.fsencode):
                f.write(dumps(done[v]) + "\n")
    if failed:
        with atomic_open(out / FAILURES) as f:
            for v in sorted(failed, key=os.fsencode):
                f.write(dumps(failed[v]) + "\n")
    else:
        (out / FAILURES).unlink(missing_ok=True)
    for j in journals:
        j.unlink(missing_ok=True)
    return len(done), len(failed)


def env_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


# ---- Lightning pieces ---------------------------------------------------------------------------------------


def _error(item: Input, e: BaseException) -> dict:
    return {"index": -1, "id": item.id, "input": str(item.path), "error": describe_error(e), "type": type(e).__name__}


class InputsDataset(Dataset):
    """Item ``i`` = ``job.load`` of input ``i`` (in a DataLoader worker), or the error that stopped it."""

    def __init__(self, job: Job, inputs: Sequence[Input]):
        self.job = job
        self.inputs = list(inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict:
        item = self.inputs[i]
        try:
            return {"index": i, "id": item.id, "loaded": self.job.load(item)}
        except Exception as e:  # one input's problem: recorded by the writer
            return {**_error(item, e), "index": i}


def _first(batch: list[dict]) -> dict:
    return batch[0]


class JobModule(LightningModule):
    """Runs ``job.process`` on one input per step; the job's models live on the rank's device."""

    def __init__(self, job: Job, inputs: Sequence[Input]):
        super().__init__()
        self.job = job
        self.inputs = list(inputs)
        self.models = nn.ModuleList(job.modules())
        self._ready = False

    def on_predict_start(self) -> None:
        if not self._ready:
            self.job.setup(self.device)
            self._ready = True

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if "error" in batch:
            return batch
        item = self.inputs[batch["index"]]
        try:
            with torch.inference_mode():
                result = self.job.process(item, batch["loaded"])
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as e:
            from emovid import batch as batch_mod
            from emovid.errors import EmovidError

            if batch_mod.DEBUG and not isinstance(e, EmovidError):
                raise
            return {**_error(item, e), "index": batch["index"]}
        return {"index": batch["index"], "id": item.id, "result": result}


class JobWriter(BasePredictionWriter):
    """Writes each input's outputs on the rank that computed them, then journals it."""

    def __init__(self, job: Job, inputs: Sequence[Input], out: Path, info: dict[str, Any], strict: bool):
        super().__init__(write_interval="batch")
        self.job, self.inputs, self.out, self.info, self.strict = job, list(inputs), out, dict(info), strict
        self.done = self.failed = 0
        self._written: set[str] = set()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        rank = int(trainer.global_rank)
        if "error" not in prediction and prediction["id"] in self._written:
            return
        if "error" not in prediction:
            item = self.inputs[prediction["index"]]
            try:
                entry = self._write(item, prediction["result"], rank)
                append_jsonl(self.out / f"manifest.rank{rank}.jsonl", entry)
                self._written.add(item.id)
                self.done += 1
                return
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # outputs that cannot be written are this input's failure, not the run's
                prediction = _error(item, e)
        self.failed += 1
        rec = {self.job.key: prediction["id"], "input": prediction["input"], "error": prediction["error"]}
        rec["type"] = prediction.get("type")
        append_jsonl(self.out / f"failures.rank{rank}.jsonl", rec)

    def _write(self, item: Input, result: Any, rank: int) -> dict:
        damage = self.job.damage(result)
        if damage and self.strict:
            raise DamagedVideoError(f"damaged video ({damage_line(damage)}); refused because of --strict", item.path)
        fields = self.job.write(item, result, self.out)
        entry = {self.job.key: item.id, **fields, **self.info, "rank": rank, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if damage:
            entry["damaged"] = damage
        return entry

    def on_predict_end(self, trainer, pl_module):
        trainer.strategy.barrier("emovid-batch-merge")
        if trainer.is_global_zero:
            merge_journals(self.out, self.job.key)
        trainer.strategy.barrier("emovid-batch-merged")


# ---- the run ------------------------------------------------------------------------------------------------


def _devices(devices: str | int | Sequence[int]):
    if isinstance(devices, str):
        d = devices.strip()
        if d.lstrip("-").isdigit():
            return int(d)
        return d
    return devices


def device_options(device: str) -> dict[str, Any]:
    """Lightning ``accelerator``/``devices`` for a torch device string (``cpu``, ``cuda``, ``cuda:1``)."""
    d = str(device).strip().lower()
    if d == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    if d.startswith(("cuda", "gpu")):
        _, _, idx = d.partition(":")
        return {"accelerator": "gpu", "devices": [int(idx)] if idx.isdigit() else 1}
    if d == "mps":
        return {"accelerator": "mps", "devices": 1}
    raise ConfigError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")


def run(
    job: Job,
    inputs: Sequence[Input],
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    strict: bool = False,
    ignored: Sequence[tuple[Path, str]] = (),
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: str | int | Sequence[int] = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    progress: bool = False,
    callbacks: list | None = None,
    trainer_kwargs: dict | None = None,
) -> BatchRecorder:
    """Run ``job`` over ``inputs`` into ``output_dir`` (see the module notes); the summary of this run.

    On ranks other than 0 the returned recorder has ``rank`` set and counts that rank's share only.

    Raises:
        ConfigError: two inputs with one id, or finished outputs made with other settings (without ``overwrite``).
    """
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from emovid.train import quiet_lightning

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids: dict[str, Input] = {}
    for it in inputs:
        if it.id in ids:
            raise ConfigError(
                f"{display_path(ids[it.id].path)} and {display_path(it.path)} would both be written as "
                f"{display_path(it.id)}; rename one or give only one"
            )
        ids[it.id] = it
    if overwrite:
        # Every rank does this before the process group forms; nothing is written before that.
        for p in [out / MANIFEST, out / FAILURES, *_journals(out, "manifest"), *_journals(out, "failures")]:
            p.unlink(missing_ok=True)
    info = job.settings()
    finished = read_manifest(out, job.key)
    for entry in finished.values():
        diff = [k for k in job.guard if entry.get(k) != info.get(k)]
        if diff:
            was = ", ".join(f"{k}={entry.get(k)!r}" for k in diff)
            now = ", ".join(f"{k}={info.get(k)!r}" for k in diff)
            raise ConfigError(
                f"{display_path(out)}: holds outputs made with {was}; this run has {now}. "
                "Pass --overwrite to replace them or choose another output folder"
            )
    todo = [it for it in inputs if not (it.id in finished and job.outputs_exist(it, finished[it.id]))]
    rec = BatchRecorder(out / FAILURES, unit=job.unit, key=job.key)
    rec.ignore(list(ignored))
    rec.total, rec.skipped = len(inputs), len(inputs) - len(todo)
    if todo:
        dl = DataLoader(
            InputsDataset(job, todo),
            batch_size=1,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_first,
            pin_memory=torch.cuda.is_available(),
        )
        module = JobModule(job, todo)
        writer = JobWriter(job, todo, out, info, strict)
        kwargs: dict[str, Any] = dict(
            accelerator=accelerator,
            devices=_devices(devices),
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            callbacks=[writer, *(callbacks or [])],
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            default_root_dir=str(out),
        )
        kwargs.update(trainer_kwargs or {})
        quiet_lightning()
        trainer = pl.Trainer(**kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.predict(module, dataloaders=dl, return_predictions=False)
        if not trainer.is_global_zero:
            rec.rank = int(trainer.global_rank)
            rec.done, rec.failures = writer.done, [{}] * writer.failed
            return rec
    elif env_rank() == 0:
        merge_journals(out, job.key)  # a crash right after the last input leaves journals behind
    # Counted from disk: with ddp_spawn the writing happened in other processes.
    finished = read_manifest(out, job.key)
    failures = read_failures(out, job.key)
    todo_ids = {it.id for it in todo}
    rec.done = sum(1 for i in todo_ids if i in finished)
    rec.failures = [failures[it.id] for it in todo if it.id in failures and it.id not in finished]
    for it in todo:
        entry = finished.get(it.id)
        if entry and entry.get("damaged"):
            rec.num_damaged += 1
            rec.warn(it.path, f"damaged video, processed what decodes: {damage_line(entry['damaged'])}")
    job.finish(out, finished, failures)
    return rec


__all__ = [
    "FAILURES",
    "MANIFEST",
    "Input",
    "InputsDataset",
    "Job",
    "JobModule",
    "JobWriter",
    "device_options",
    "env_rank",
    "merge_journals",
    "read_failures",
    "read_manifest",
    "run",
]
