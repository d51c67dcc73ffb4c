"""How every batch command ends: warnings and the first failures on stderr, one summary line, one exit rule."""

from __future__ import annotations

import os

import typer

from emovid.batch import BatchRecorder


def finish(rec: BatchRecorder, where: str | os.PathLike | None = None, detail: str = "", extra: str = "") -> int:
    """Print the run's warnings, first failures and summary; return the exit code (1 when any input failed).

    ``detail`` follows the counts (``... of 4 videos (test_x3d, dim 64)``), ``extra`` ends the line.
    """
    for line in rec.warning_lines():
        typer.echo(f"emovid: warning: {line}", err=True)
    for line in rec.error_lines():
        typer.echo(f"emovid: error: {line}", err=True)
    typer.echo(rec.summary_line(where, detail) + extra)
    return rec.exit_code
