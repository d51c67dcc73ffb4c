"""``emovid predict``: a trained run scores new videos (predictions.csv + predictions.jsonl), on the batch engine."""

from __future__ import annotations

from pathlib import Path

import typer

from emovid.cli import app
from emovid.cli._batch import engine_options, finish


@app.command()
def predict(
    checkpoint: Path = typer.Argument(..., help="A run folder written by `emovid train` (any task)."),
    inputs: list[Path] = typer.Argument(
        ..., help="Videos, folders (searched recursively) or list files (.txt: one path a line; .csv: video_path)."
    ),
    output_dir: Path = typer.Option(Path("emovid-predictions"), "--output-dir", "-o", help="Output folder."),
    timeline: bool = typer.Option(
        False, "--timeline", help="Also per-window (video models) or per-frame (sequence models) series in the JSONL."
    ),
    sort: str | None = typer.Option(
        None, "--sort", help="Order predictions.csv by this column, highest first (e.g. intensity: rank videos)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Windows (clips) per forward pass."),
    num_workers: int = typer.Option(2, "--num-workers", help="Decoding processes per device."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, cuda:1, ...)."),
    devices: str | None = typer.Option(
        None, "--devices", help="Shard the inputs over devices with Lightning: a count or a list like 0,1."
    ),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes (with torchrun or SLURM)."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy for many devices (auto, ddp, ...)."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: score the frames that decode, with a warning)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Score every video again (default: resume)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> int:
    """Score videos with a trained model: OUT/predictions.csv (one row per video) and OUT/predictions.jsonl.

    Columns are named by what they are: intensity and embedding_norm; the 27 VCE emotions and top3; valence (V2V);
    valence and arousal (means); the 7 MOSEI emotions; the 5 OCEAN traits. Resumable; a bad video is recorded in
    failures.jsonl and the rest go on (exit 1).
    """
    if not checkpoint.exists():  # at once, not after the seconds of importing torch and Lightning
        from emovid.errors import InputNotFoundError

        raise InputNotFoundError(checkpoint, "run folder")
    from emovid.predict_run import predict_inputs

    s = predict_inputs(
        checkpoint,
        inputs,
        output_dir,
        timeline=timeline,
        sort=sort,
        device=device,
        strict=strict,
        overwrite=overwrite,
        progress=progress,
        num_workers=num_workers,
        batch_size=batch_size,
        engine_options=engine_options(device, devices, num_nodes, strategy),
        announce=lambda line: typer.echo(line, err=True),
    )
    rec = s["recorder"]
    if rec.rank:
        return 0
    return finish(rec, s["output_dir"], detail=f" ({s['task']})", extra=f"; predictions: {s['csv']}")
