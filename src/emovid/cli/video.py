"""``emovid probe`` and ``emovid demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app, err
from emovid.errors import EmovidError


@app.command()
def probe(
    videos: list[Path] = typer.Argument(..., help="Video files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list, one object per video)."),
) -> int:
    """Print duration, frame rate, frame count, size, codec and audio presence of videos."""
    from emovid.video import probe as probe_video

    results, failed = [], 0
    for path in videos:
        try:
            info = probe_video(path)
        except EmovidError as e:
            failed += 1
            if as_json:
                results.append({"path": str(path), "error": e.message})
            else:
                err(str(e))
            continue
        if as_json:
            results.append(info.to_dict())
        else:
            vfr = " (variable)" if info.variable_fps else ""
            exact = "" if info.num_frames_exact else " (approx.)"
            rot = f", rotated {info.rotation}°" if info.rotation else ""
            typer.echo(
                f"{info.path}: {info.duration:.3f} s, {info.fps:.3f} fps{vfr}, {info.num_frames} frames{exact}, "
                f"{info.width}x{info.height}{rot}, {info.codec}, {'audio' if info.has_audio else 'no audio'}"
            )
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    return 1 if failed else 0


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("emovid-demo"), "--output-dir", "-o", help="Where to write the demo files."),
) -> int:
    """Run the built-in example offline: make a sample video, probe it and sample frames from it."""
    from emovid.demo import run_demo

    summary = run_demo(output_dir)
    typer.echo(json.dumps(summary, indent=2))
    return 0
