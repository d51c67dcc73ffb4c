"""``emovid extract``: embeddings of every video, one file each, with a manifest (RankNet-X3D step 4)."""

from __future__ import annotations

from pathlib import Path

import typer

from emovid.cli import app
from emovid.cli._batch import finish


@app.command()
def extract(
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="emovid checkpoint folder (from `emovid train`); its feature extractor is used."
    ),
    model: str | None = typer.Option(None, "--model", help="Registered model name (instead of --checkpoint)."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="Weights for --model: tag, file, local-dir:PATH, hub id, URL or none (random init); default: the "
        "model's default tag (* in `emovid list-models`).",
    ),
    allow_size_mismatch: bool = typer.Option(
        False, "--allow-size-mismatch", help="Load the tensors that fit (e.g. a pretext front-end into a GRU model)."
    ),
    video_root: Path | None = typer.Option(
        None, "--video-root", "--video_root", help="Folder of the videos; output paths mirror paths below it."
    ),
    list_file: Path | None = typer.Option(
        None, "--list", help="Videos to embed: one path per line, or a CSV with a video_path column (default: all)."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "--output_dir", "-o", help="Where the feature files and manifest.jsonl go."
    ),
    fmt: str = typer.Option(
        "npy", "--format", help='npy: float32 [D] or [N, D]; pt: {"emb": Tensor[N, D], "length": N} (as faces embed).'
    ),
    clips: str | None = typer.Option(
        None,
        "--clips",
        help="Clip sampler: sliding:TxS:HOP, uniform:N, center:TxS, rate:FPS "
        "(default: non-overlapping windows of the model's clip length).",
    ),
    aggregate: str | None = typer.Option(
        None,
        "--aggregate",
        help="mean | max over a video's clips, or none (one row per clip). Default: npy mean, pt none.",
    ),
    batch_size: int = typer.Option(16, "--batch-size", "--batch_size", help="Clips per forward pass."),
    num_workers: int = typer.Option(2, "--num-workers", help="Decoding processes per device."),
    accelerator: str = typer.Option("auto", "--accelerator", help="cpu | gpu | auto."),
    devices: str = typer.Option("auto", "--devices", help="Devices per node: auto, N, or a list like 0,1."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes (with torchrun or SLURM)."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy (auto, ddp, ...)."),
    precision: str = typer.Option("32-true", "--precision", help="32-true, 16-mixed, bf16-mixed, ..."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute every video and start a new manifest."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: embed the frames that decode, with a warning)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> int:
    """Export one embedding file per video (+ manifest.jsonl); resumable, sharded over all devices and nodes.

    Rerunning skips finished videos and retries failed ones. Unreadable videos go to failures.jsonl (exit 1).
    """
    from emovid.extract import extract_features

    summary = extract_features(
        video_root,
        output_dir,
        checkpoint=checkpoint,
        model=model,
        pretrained=pretrained,
        allow_size_mismatch=allow_size_mismatch,
        list_file=list_file,
        fmt=fmt,
        clips=clips,
        aggregate=aggregate,
        batch_size=batch_size,
        num_workers=num_workers,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        overwrite=overwrite,
        progress=progress,
        strict=strict,
    )
    if "rank" in summary:  # another rank of a distributed run: rank 0 reports
        return 0
    return finish(summary["recorder"], summary["output_dir"], detail=f" ({summary['model']}, dim {summary['dim']})")
