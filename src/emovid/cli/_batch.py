"""How every batch command ends: warnings and the first failures on stderr, one summary line, one exit rule."""

from __future__ import annotations

import os

import typer

from emovid.batch import BatchRecorder


def finish(rec: BatchRecorder, where: str | os.PathLike | None = None, detail: str = "", extra: str = "") -> int:
    """Print the run's warnings, first failures and summary; return the exit code (1 when any input failed).

    ``detail`` follows the counts (``... of 4 videos (test_x3d, dim 64)``), ``extra`` ends the line.
    """
    if rec.rank:  # another rank of a distributed run: rank 0 reports for all
        return 0
    for line in rec.warning_lines():
        typer.echo(f"emovid: warning: {line}", err=True)
    for line in rec.error_lines():
        typer.echo(f"emovid: error: {line}", err=True)
    typer.echo(rec.summary_line(where, detail) + extra)
    return rec.exit_code


def engine_options(device: str, devices: str | None, num_nodes: int, strategy: str) -> dict:
    """Batch-engine options for commands that take ``--device`` plus optional ``--devices/--num-nodes/--strategy``."""
    if devices is None and num_nodes == 1 and strategy == "auto":
        return {}
    from emovid.engine import device_options

    opts = device_options(device)
    if devices is not None:
        d = devices.strip()
        opts["devices"] = int(d) if d.isdigit() else [int(x) for x in d.split(",") if x.strip()]
    return {**opts, "num_nodes": num_nodes, "strategy": strategy}
