"""``emovid faces embed``: the EmoNeXt recipe's per-video face-embedding sequences (30 x D) for MOSEI / FIV2."""

from __future__ import annotations

from pathlib import Path

import typer

from emovid.cli import app
from emovid.cli._batch import engine_options, finish

faces_app = typer.Typer(
    help="Face crops and face embeddings (the input of emotion_dist, personality and fusion training).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(faces_app, name="faces")


def _pretrained(value: str | None) -> str | bool | None:
    if value is None:
        return True
    return None if value.lower() in ("none", "random", "false") else value


@faces_app.command("embed", context_settings={"allow_extra_args": True})
def embed(
    ctx: typer.Context,
    split: str = typer.Option(..., "--split", help="Split name: train, dev/val or test (the output sub-folder)."),
    base_path: Path = typer.Option(
        ..., "--base_path", "--base-path", help="Dataset root (videos in BASE/SPLIT, BASE/FOLDER or BASE)."
    ),
    output_root: Path = typer.Option(
        ..., "--output_root", "--output-root", help="Where OUTPUT_ROOT/SPLIT/VIDEO.pt files go."
    ),
    folders: list[str] | None = typer.Option(
        None,
        "--folders",
        help="Sub-folders of BASE to read (FIV2's training80_01 ...); repeat or list them; a quoted glob such as "
        "'training80_*' matches inside BASE.",
    ),
    model: str = typer.Option("emonext_base", "--model", help="Registered face model (embeds each crop)."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="Weights: tag, file, local-dir:PATH, hub id/URL; 'none' = random (default: the model's).",
    ),
    num_crops: int = typer.Option(30, "--num-crops", "--num_crops", help="Evenly spaced face crops per video."),
    margin: float = typer.Option(0.2, "--margin", help="Crop context on each side, fraction of the face box."),
    detector: str = typer.Option(
        "blazeface",
        "--detector",
        help="Face detector preset: blazeface (default), blazeface-full (small faces in wide shots), haar, "
        "haar-frontal, haar-full, ..., yunet, yunet:FILE.onnx.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", "--batch_size", help="Crops per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, cuda:1, ...)."),
    devices: str | None = typer.Option(
        None,
        "--devices",
        help="Shard the inputs over devices with Lightning: a count or a list like 0,1 (with --device cuda).",
    ),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes (with torchrun or SLURM)."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy for many devices (auto, ddp, ...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute videos whose .pt exists."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: embed the frames that decode, with a warning)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> int:
    """Write {"emb": Tensor[30, D], "length": n} per video (real crops first, zero rows after); resumable."""
    from emovid.errors import ConfigError
    from emovid.faces.embed import embed_videos

    # The original scripts take `--folders a b c` (argparse nargs="+"); click keeps one value per option and leaves
    # the rest as extra arguments, which belong to --folders.
    if ctx.args and not folders:
        raise ConfigError(f"unexpected argument(s) {' '.join(ctx.args)}; emovid faces embed takes options only")
    folders = [*(folders or []), *ctx.args]
    s = embed_videos(
        split,
        base_path,
        output_root,
        folders=_split_folders(folders),
        model=model,
        pretrained=_pretrained(pretrained),
        num_crops=num_crops,
        margin=margin,
        detector=detector,
        batch_size=batch_size,
        device=device,
        overwrite=overwrite,
        progress=progress,
        strict=strict,
        engine_options=engine_options(device, devices, num_nodes, strategy),
    )
    return finish(
        s["recorder"], s["output_dir"], detail=f" ({s['no_face']} without any face; {s['model']}, dim {s['dim']})"
    )


def _split_folders(folders: list[str] | None) -> list[str] | None:
    # The original scripts pass `--folders a b c`; typer takes repeated options, so also accept comma/space separated
    # values.
    if not folders:
        return None
    out = [f for item in folders for f in item.replace(",", " ").split()]
    return out or None
