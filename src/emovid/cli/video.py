"""``emovid probe`` and ``emovid demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app, err
from emovid.errors import EmovidError, display_path


@app.command()
def probe(
    videos: list[Path] = typer.Argument(..., help="Video files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list, one object per video)."),
    decode: bool = typer.Option(
        False, "--decode", help="Decode every frame to find damage inside the stream too (at decoding speed)."
    ),
) -> int:
    """Print duration, frame rate, frame count, size, codec and audio presence of videos.

    A damaged video (frames missing, a stream cut short, decode errors) or implausible metadata (frame rate,
    duration, rotation) is still reported, flagged ``WARNING:`` on its line (``damage`` and ``warnings`` in
    ``--json``), with a one-line warning naming the file on stderr. Warnings alone exit 0: the file was probed
    and the flags say what to distrust; exit 1 means some file could not be probed at all. Without
    ``--decode`` only the container and the first frame are checked.
    """
    from emovid.video import probe as probe_video
    from emovid.video.decode import damage_message

    results, failed = [], 0
    for path in videos:
        try:
            info = probe_video(path, decode=decode)
        except EmovidError as e:
            failed += 1
            if as_json:
                results.append({"path": str(path), "error": e.message})
            else:
                err(str(e))
            continue
        flags = [damage_message(info.damage)] if info.damage else []
        if info.warnings:
            flags.append("implausible metadata: " + "; ".join(info.warnings))
        if flags:
            typer.echo(f"emovid: warning: {display_path(info.path)}: {'; '.join(flags)}", err=True)
        if as_json:
            results.append(info.to_dict())
            continue
        vfr = " (variable)" if info.variable_fps else ""
        exact = "" if info.num_frames_exact else " (approx.)"
        rot = f", rotated {info.rotation}°" if info.rotation else ""
        warn = f"  WARNING: {'; '.join(flags)}" if flags else ""
        typer.echo(
            f"{display_path(info.path)}: {info.duration:.3f} s, {info.fps:.3f} fps{vfr}, {info.num_frames} frames"
            f"{exact}, {info.width}x{info.height}{rot}, {info.codec}, {'audio' if info.has_audio else 'no audio'}"
            f"{warn}"
        )
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    return 1 if failed else 0


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("emovid-demo"), "--output-dir", "-o", help="Where to write the demo files."),
) -> int:
    """Run the built-in example offline: analyse a generated face video and a bundled photo with the bundled model."""
    from emovid.demo import run_demo

    summary = run_demo(output_dir)
    for seg in summary.get("segments", []):
        seen = seg["model"] or "no face"
        typer.echo(f"  {seg['from_s']:4.1f}-{seg['to_s']:4.1f} s  drawn {seg['drawn']:<9} model: {seen}")
    for r in summary.get("results", []):
        where = "image" if r.get("kind") == "image" else f"{r.get('frames_with_face', 0)} frames with a face"
        typer.echo(f"{r['key']}: {r.get('dominant_emotion') or 'no face'} ({r.get('faces_found', 0)} face(s), {where})")
    typer.echo(f"report: {summary.get('report')}  summary: {Path(output_dir) / 'demo.json'}")
    return 0
