"""``emovid data check`` and ``emovid synth``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from emovid.cli import app

data_app = typer.Typer(
    name="data",
    help="Label files: validate datasets.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_app, name="data")


@data_app.command("check")
def check(
    fmt: str = typer.Argument(
        ..., metavar="FORMAT", help="intensity | vce | v2v | mosei | fiv2 | va (sewa) | captions | msrvtt"
    ),
    path: Path = typer.Argument(..., help="Label file, or dataset folder for vce / v2v / fiv2."),
    video_root: Path | None = typer.Option(None, "--video-root", help="Folder the video paths are relative to."),
    no_probe: bool = typer.Option(False, "--no-probe", help="Only check that videos exist; do not open them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    max_problems: int = typer.Option(50, "--max-problems", help="Problems to list (0 = all); counts are always full."),
) -> int:
    """Report malformed rows, out-of-range values, duplicate/unknown ids, missing and unreadable videos.

    Exits 1 when any error is found. Warnings (contradictory or repeated V2V judgements, times out of order, an
    empty extra split) are listed with a ``warning:`` prefix but leave the exit code 0.
    """
    from emovid.data.check import check_labels

    report = check_labels(fmt, path, video_root=video_root, probe_videos=not no_probe)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.format_text(max_problems or None))
    return 0 if report.ok else 1


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Output folder."),
    videos: int = typer.Option(200, "--videos", "-n", min=1, help="Number of videos."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same labels."),
    size: int = typer.Option(112, "--size", help="Frame width and height in pixels (even, >= 64)."),
    fps: int = typer.Option(15, "--fps", min=1, help="Frame rate."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.2, help="Video duration."),
    workers: int | None = typer.Option(None, "--workers", help="Render processes (default: CPU count)."),
) -> int:
    """Render synthetic face videos whose look follows known labels, with labels in every format."""
    from emovid.data.synth import generate
    from emovid.errors import ConfigError

    if size < 64 or size % 2:
        raise ConfigError(f"--size must be an even number >= 64, got {size}")
    t0 = time.perf_counter()
    manifest = generate(out_dir, videos, seed=seed, size=size, fps=fps, seconds=seconds, workers=workers)
    dt = time.perf_counter() - t0
    typer.echo(f"wrote {manifest['num_videos']} videos and labels to {out_dir} in {dt:.1f} s")
    for name, spec in manifest["formats"].items():
        typer.echo(f"  {name:10s} {out_dir / spec['path']}")
    typer.echo(f"  manifest   {out_dir / 'synth_manifest.json'}")
    return 0
