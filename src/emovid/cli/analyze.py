"""``emovid analyze``: faces and their emotions over time in videos, images or folders -> JSON, CSV, HTML."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from emovid.cli import app, err
from emovid.cli._batch import engine_options, finish
from emovid.errors import display_path


@app.command()
def analyze(
    inputs: list[Path] = typer.Argument(..., help="Videos, images or folders (searched recursively)."),
    output_dir: Path = typer.Option(
        Path("emovid-analysis"), "--output-dir", "--output_dir", "-o", help="Output folder."
    ),
    fps: float = typer.Option(5.0, "--fps", help="Frames analysed per second of video."),
    model: str = typer.Option("fer_mini_xception", "--model", help="Registered face-emotion classifier."),
    pretrained: str | None = typer.Option(
        None, "--pretrained", help="Weights for --model: tag, file, local-dir:PATH (default: the bundled ones)."
    ),
    checkpoint: list[Path] | None = typer.Option(
        None,
        "--checkpoint",
        help="A run folder from `emovid train` (repeatable; any task but retrieval): its predictions (intensity, "
        "VCE emotions, valence/arousal, MOSEI emotions, OCEAN traits) join each video's summary and the report.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "--batch_size", help="Face crops per forward pass."),
    detector: str = typer.Option(
        "blazeface",
        "--detector",
        help="Face detector: blazeface (MediaPipe's short-range CNN, bundled; the default: more faces found, "
        "tilted heads included, no false boxes on real faces), blazeface-full (MediaPipe's full-range CNN, bundled: "
        "small faces in wide shots, 2-3x the cost), haar, haar-frontal, haar-full, haar-fast, haar-fer "
        "(OpenCV cascades), or yunet (CNN; weights fetched from the Hugging Face Hub once) / yunet:FILE.onnx.",
    ),
    redetect_every: int = typer.Option(
        5,
        "--redetect-every",
        help="Haar detectors: full face search every N analysed frames, in between a search at the sizes of the "
        "faces found (same boxes, less work; 1: full search on every frame). BlazeFace and YuNet search every "
        "frame, except with --landmarks full: then the face mesh follows faces between searches every N frames.",
    ),
    max_side: int = typer.Option(1280, "--max-side", help="Decode frames larger than this downscaled."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, ...)."),
    devices: str | None = typer.Option(
        None,
        "--devices",
        help="Shard the inputs over devices with Lightning: a count or a list like 0,1 (with --device cuda).",
    ),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes (with torchrun or SLURM)."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy for many devices (auto, ddp, ...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo inputs whose JSON exists (default: skip them)."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: analyse the frames that decode, with a warning)."
    ),
    landmarks: str = typer.Option(
        "detector",
        "--landmarks",
        help="detector: the key points the detector gives (BlazeFace 6, YuNet 5); full: MediaPipe's 468-point face "
        "mesh per face, and head pose (yaw, pitch, roll in degrees) from it.",
    ),
    smooth: float = typer.Option(
        0.0,
        "--smooth",
        metavar="SECONDS",
        help="Smooth each face's emotion probabilities over a centred window of SECONDS (0: off); the smoothed "
        "values are added as emotions_smoothed (raw ones kept) and drive the emotion segments.",
    ),
    min_segment: float = typer.Option(
        1.0,
        "--min-segment",
        metavar="SECONDS",
        help="Emotion segments (runs of one dominant emotion per face) shorter than this join a neighbour.",
    ),
    align: bool = typer.Option(
        False,
        "--align/--no-align",
        help="Crop faces upright and scaled by their eye distance (needs key points: blazeface, yunet or "
        "--landmarks full) instead of along the box.",
    ),
    flip: bool = typer.Option(
        False, "--flip/--no-flip", help="Average each face's emotions with those of its mirror image."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> int:
    """Per input OUT/NAME.json + NAME.csv, and OUT/report.html; failures go to OUT/failures.jsonl (exit 1).

    A bad input never stops the run: it is recorded and the rest go on. Damaged videos are analysed as far as they
    decode, with a warning and a "damaged" record in their JSON (--strict fails them instead).
    """
    from emovid.analyze import AnalyzeOptions, analyze_inputs

    opts = AnalyzeOptions(
        fps=fps,
        batch_size=batch_size,
        detector=detector,
        redetect_every=redetect_every,
        max_side=max_side,
        progress=progress,
        overwrite=overwrite,
        strict=strict,
        smooth=smooth,
        landmarks=landmarks,
        min_segment=min_segment,
        align=align,
        flip=flip,
    )
    weights: str | bool | None = True if pretrained is None else pretrained
    if isinstance(weights, str) and weights.lower() in ("none", "random"):
        weights = None
    from emovid.utils.threads import spare_core_for_decoding

    with spare_core_for_decoding() if device == "cpu" else nullcontext():
        s = analyze_inputs(
            inputs,
            output_dir,
            model=model,
            pretrained=weights,
            options=opts,
            checkpoint=checkpoint or None,
            device=device,
            log=err,
            engine_options=engine_options(device, devices, num_nodes, strategy),
        )
    if s["recorder"].rank:  # another rank of a distributed run: rank 0 reports for all
        return 0
    for r in s["results"]:
        dom = r.get("dominant_emotion") or "no face"
        seen = (
            "image"
            if r.get("kind") == "image"
            else f"{r.get('frames_with_face', 0)}/{r.get('frames_analyzed', 0)} frames with a face"
        )
        typer.echo(f"{display_path(r['key'])}: {dom} ({r.get('faces_found', 0)} face(s), {seen})")
    return finish(s["recorder"], extra=f"; report: {display_path(s['report'])}")
