"""``emovid weights fetch``: download pretrained weights ahead of time (e.g. for a cluster without network)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app

weights_app = typer.Typer(
    help="Pretrained weights: fetch them ahead of time; they live in $EMOVID_HOME/weights (default ~/.cache/emovid).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(weights_app, name="weights")


@weights_app.command("fetch")
def fetch(
    names: list[str] = typer.Argument(
        ..., help="NAME (its default weights, marked * in `emovid list-models`) or NAME.TAG; also `yunet`."
    ),
    to: Path | None = typer.Option(
        None,
        "--to",
        help="emovid home to fill (files go to DIR/weights); copy DIR to the offline machine and set EMOVID_HOME=DIR "
        "there. Default: $EMOVID_HOME, else ~/.cache/emovid.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: name, path, kind, bytes, sha256 per entry."),
) -> int:
    """Download (and checksum) the named weights, so later runs need no network."""
    from emovid.models.hub import fetch_weights, home_dir

    rows = fetch_weights(names, to=to)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] >= 1e5 else f"{r['bytes']} bytes"
        sha = f", sha256 {r['sha256'][:16]}..." if r["sha256"] else ""
        typer.echo(f"{r['name']}: {r['path']} ({size}{sha})")
    home = to.expanduser().absolute() if to is not None else home_dir()
    if all(Path(r["path"]).absolute().is_relative_to(home) for r in rows):
        typer.echo(f"for another machine: copy {home} there and set EMOVID_HOME to it (and EMOVID_OFFLINE=1)")
    else:  # Hugging Face files went to the hub's own cache
        typer.echo("for another machine: fetch again with --to DIR to gather every file in DIR")
    return 0
