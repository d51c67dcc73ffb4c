"""``emovid captions label``: emotion-caption emotion records from plain captions (NRC Emotion Lexicon counts)."""

from __future__ import annotations

from pathlib import Path

import typer

from emovid.cli import app

captions_app = typer.Typer(help="Caption files: affect labels for retrieval training.", no_args_is_help=True)
app.add_typer(captions_app, name="captions")


@captions_app.command("label")
def label(
    captions: Path = typer.Argument(..., help="MSR-VTT captions (.csv / .json) or a JSON list of captions."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Emotion caption JSON to write (what emovid train retrieval reads)."
    ),
    require_emotion: bool = typer.Option(
        False, "--require-emotion", help="Keep only captions (or videos, --per video) with an emotion."
    ),
    per: str = typer.Option("caption", "--per", help="Unit of --require-emotion: caption | video."),
    video_root: Path | None = typer.Option(
        None, "--video-root", help="Folder of the videos: fills durations the captions lack."
    ),
    lexicon: Path | None = typer.Option(
        None, "--lexicon", help="Lexicon file (JSON word -> affects, or the NRC word-level .txt); default: nrclex's."
    ),
) -> int:
    """Count NRC Emotion Lexicon words in each caption; write one emotion caption record per caption."""
    from emovid.retrieval.captions import label_captions, load_lexicon
    from emovid.utils.io import write_json

    lex = load_lexicon(lexicon)
    out = label_captions(captions, lex, video_root=video_root, require_emotion=require_emotion, per=per)
    write_json(output, out["records"])
    typer.echo(
        f"{out['kept']} of {out['captions']} captions ({out['videos']} videos, {out['with_emotion']} with an "
        f"emotion) -> {output}; lexicon: {out['lexicon']}",
        err=True,
    )
    if out["unreadable_videos"]:
        names = out["unreadable_videos"]
        typer.echo(f"warning: {len(names)} video(s) not readable under {video_root} (first: {names[0]})", err=True)
    if out["no_duration"]:
        typer.echo(
            f"warning: {out['no_duration']} record(s) have duration null; pass --video-root DIR to read durations "
            "from the videos (emovid train retrieval needs them)",
            err=True,
        )
    return 0
