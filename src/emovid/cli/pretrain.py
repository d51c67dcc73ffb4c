"""``emovid pretrain byol|dino``: self-supervised pretext pretraining of a video front-end (VAERR)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app

# Options whose names differ between the command line and PretrainConfig.
_RENAME = {"progress": "progress_bar"}


@app.command(context_settings={"allow_interspersed_args": True})
def pretrain(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="byol (Grill et al. 2020) | dino (Caron et al. 2021)"),
    config: Path | None = typer.Option(None, "--config", help="YAML recipe (see configs/); flags override it."),
    videos: str | None = typer.Option(
        None, "--videos", "--video-root", help="Folder of unlabelled videos (searched recursively)."
    ),
    output_dir: str = typer.Option("runs/pretrain", "--output-dir", "--output_dir", "-o", help="Checkpoint folder."),
    model: str = typer.Option("resnet18_3dstem", "--model", help="Backbone to pretrain (emovid list-models)."),
    pretrained: str | None = typer.Option(None, "--pretrained", help="Start from these weights (file, tag, ...)."),
    num_frames: int | None = typer.Option(None, "--num-frames", help="Frames per clip (default: the model's)."),
    frame_stride: int | None = typer.Option(None, "--frame-stride", help="Frame step (default: the model's)."),
    input_size: int | None = typer.Option(None, "--input-size", help="Global crop side (default: the model's)."),
    epochs: int = typer.Option(100, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size", "--batch_size"),
    lr: float = typer.Option(5e-4, "--lr"),
    weight_decay: float = typer.Option(0.04, "--weight-decay"),
    warmup_epochs: float = typer.Option(10.0, "--warmup-epochs"),
    accumulate_grad_batches: int = typer.Option(1, "--accumulate-grad-batches"),
    gradient_clip_val: float | None = typer.Option(None, "--gradient-clip-val"),
    precision: str = typer.Option("32-true", "--precision", help="32-true | 16-mixed | bf16-mixed"),
    seed: int = typer.Option(0, "--seed"),
    num_workers: int = typer.Option(2, "--num-workers", "--workers"),
    flip_p: float = typer.Option(0.5, "--flip-p", help="Horizontal flip probability."),
    jitter_p: float = typer.Option(0.8, "--jitter-p", help="Colour jitter probability."),
    brightness: float = typer.Option(0.4, "--brightness"),
    contrast: float = typer.Option(0.4, "--contrast"),
    blur: bool = typer.Option(True, "--blur/--no-blur", help="Gaussian blur (BYOL/DINO probabilities)."),
    byol_hidden_dim: int = typer.Option(4096, "--byol-hidden-dim"),
    byol_proj_dim: int = typer.Option(256, "--byol-proj-dim"),
    byol_tau: float = typer.Option(0.996, "--byol-tau", help="Base EMA coefficient τ_base."),
    dino_hidden_dim: int = typer.Option(2048, "--dino-hidden-dim"),
    dino_bottleneck_dim: int = typer.Option(256, "--dino-bottleneck-dim"),
    dino_out_dim: int = typer.Option(4096, "--dino-out-dim", help="Prototypes K."),
    dino_momentum: float = typer.Option(0.996, "--dino-momentum", help="Base teacher momentum."),
    teacher_temp: float = typer.Option(0.04, "--teacher-temp"),
    warmup_teacher_temp: float = typer.Option(0.04, "--warmup-teacher-temp"),
    warmup_teacher_temp_epochs: int = typer.Option(0, "--warmup-teacher-temp-epochs"),
    student_temp: float = typer.Option(0.1, "--student-temp"),
    center_momentum: float = typer.Option(0.9, "--center-momentum"),
    local_crops: int = typer.Option(6, "--local-crops", help="DINO: local views per video."),
    local_size: int | None = typer.Option(None, "--local-size", help="DINO: local crop side (default 96/224)."),
    freeze_last_layer: int = typer.Option(1, "--freeze-last-layer", help="DINO: epochs with frozen prototypes."),
    accelerator: str = typer.Option("auto", "--accelerator"),
    devices: str = typer.Option("auto", "--devices", help="auto, a count, or a list like 0,1"),
    num_nodes: int = typer.Option(1, "--num-nodes"),
    strategy: str = typer.Option("auto", "--strategy", help="auto | ddp | ..."),
    sync_batchnorm: bool = typer.Option(False, "--sync-batchnorm", help="BatchNorm over all devices (DDP)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output-dir exactly."),
    max_steps: int = typer.Option(-1, "--max-steps"),
    log_every_n_steps: int = typer.Option(10, "--log-every-n-steps"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> int:
    """Pretrain a front-end without labels (BYOL or DINO); writes model.safetensors for --pretrained downstream."""
    from emovid.pretrain import PretrainConfig
    from emovid.pretrain import pretrain as run

    values = {_RENAME.get(k, k): v for k, v in ctx.params.items() if k != "config"}
    if config is not None:
        from click.core import ParameterSource as PS  # noqa: N817

        default = (getattr(PS, "DEFAULT", None), getattr(PS, "DEFAULT_MAP", None))
        given = {
            _RENAME.get(k, k): v for k, v in ctx.params.items() if k != "config" and _source(ctx, k) not in default
        }
        cfg = PretrainConfig.from_yaml(config, **given)
    else:
        cfg = PretrainConfig.from_dict(values)
    summary = run(cfg)
    typer.echo(json.dumps(summary, indent=2, default=str))
    return 0


def _source(ctx: typer.Context, name: str):
    try:
        return ctx.get_parameter_source(name)
    except Exception:  # pragma: no cover
        return None
