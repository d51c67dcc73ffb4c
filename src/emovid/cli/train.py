"""``emovid train TASK``: every task on one Lightning engine."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app

TASK_HELP = (
    "intensity (rank videos by how strongly they show emotion) | vce (27 emotion intensities) | v2v (which of two "
    "videos is preferred) | valence_arousal (valence and arousal over time) | emotion_dist (MOSEI emotion "
    "distribution) | personality (First Impressions OCEAN traits) | fusion (both at once) | retrieval (text-video "
    "search with emotion). emotion_dist, personality and fusion train on `emovid faces embed` output."
)


@app.command(context_settings={"allow_interspersed_args": True})
def train(
    ctx: typer.Context,
    task: str = typer.Argument(..., help=TASK_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML recipe (see configs/); flags override it."),
    data: str | None = typer.Option(
        None, "--data", "--data-csv", "--data_csv", help="Labels: CSV file or dataset folder."
    ),
    video_root: str | None = typer.Option(None, "--video-root", "--video_root", help="Folder of the videos."),
    output_dir: str = typer.Option("runs/emovid", "--output-dir", "--output_dir", "-o", help="Checkpoint folder."),
    model: str | None = typer.Option(None, "--model", help="Backbone (emovid list-models); default per task."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        "--model-path",
        "--model_path",
        help="Weights to start from: tag, file, local-dir:PATH, hub id, URL, or none (random init). Default: the "
        "model's default tag (* in `emovid list-models`), downloaded once into $EMOVID_HOME/weights.",
    ),
    allow_size_mismatch: bool = typer.Option(
        False, "--allow-size-mismatch", "--allow_size_mismatch", help="Load what fits (skip tensors of another shape)."
    ),
    model_arg: list[str] = typer.Option([], "--model-arg", help="KEY=VALUE passed to the model (repeatable)."),
    num_frames: int | None = typer.Option(None, "--num-frames", help="Frames per clip (default: the model's)."),
    frame_stride: int | None = typer.Option(None, "--frame-stride", help="Frame step inside a clip."),
    input_size: int | None = typer.Option(None, "--input-size", help="Square input size (default: the model's)."),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size", "--batch_size"),
    lr: float = typer.Option(1e-5, "--lr", help="Learning rate (backbone)."),
    head_lr: float | None = typer.Option(None, "--head-lr", help="Learning rate of the head (default: --lr)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay", "--weight_decay"),
    weight_decay_1d: bool = typer.Option(
        False, "--weight-decay-1d/--no-weight-decay-1d", help="Decay biases and norm weights too (VAERR)."
    ),
    optimizer: str = typer.Option("adamw", "--optimizer", "--opt", help="adamw | adam | sgd"),
    opt_betas: tuple[float, float] = typer.Option((0.9, 0.999), "--opt-betas", "--opt_betas", help="Adam betas."),
    opt_eps: float = typer.Option(1e-8, "--opt-eps", "--opt_eps"),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    nesterov: bool = typer.Option(False, "--nesterov/--no-nesterov", help="SGD with Nesterov momentum."),
    layer_decay: float | None = typer.Option(
        None, "--layer-decay", "--layer_decay", help="Layer-wise LR decay, e.g. 0.75 (backbones with a group_matcher)."
    ),
    lr_reference_batch: int | None = typer.Option(
        None, "--lr-reference-batch", help="Scale --lr and --min-lr by total batch / this (VideoMAE: 256)."
    ),
    scheduler: str = typer.Option("cosine", "--scheduler", help="cosine (per step) | cosine_epoch (VAERR) | constant"),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", "--warmup_epochs"),
    min_lr: float = typer.Option(0.0, "--min-lr", "--min_lr", help="Where the cosine ends."),
    accumulate_grad_batches: int = typer.Option(1, "--accumulate-grad-batches"),
    gradient_clip_val: float | None = typer.Option(None, "--gradient-clip-val"),
    precision: str = typer.Option("32-true", "--precision", help="32-true | 16-mixed | bf16-mixed"),
    early_stopping_patience: int | None = typer.Option(None, "--early-stopping-patience"),
    seed: int = typer.Option(0, "--seed"),
    val_fraction: float = typer.Option(0.2, "--val-fraction"),
    split_seed: int = typer.Option(0, "--split-seed"),
    train_sampler: str | None = typer.Option(None, "--train-sampler", help="e.g. random:16x4"),
    eval_sampler: str | None = typer.Option(None, "--eval-sampler", help="e.g. center:16x4"),
    num_workers: int = typer.Option(2, "--num-workers", "--workers"),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unreadable video instead of skipping."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone"),
    cache_features: bool = typer.Option(
        False, "--cache-features", help="Frozen backbone: embed each video once, train the head on the cache."
    ),
    augment: bool = typer.Option(True, "--augment/--no-augment"),
    accelerator: str = typer.Option("auto", "--accelerator"),
    devices: str = typer.Option("auto", "--devices", help="auto, a count, or a list like 0,1"),
    num_nodes: int = typer.Option(1, "--num-nodes"),
    strategy: str = typer.Option(
        "auto",
        "--strategy",
        help="auto | ddp | ddp_find_unused_parameters_true | deepspeed_stage_1 | deepspeed_stage_2 | ... "
        "(Lightning's names; DeepSpeed needs pip install deepspeed)",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output-dir exactly."),
    max_steps: int = typer.Option(-1, "--max-steps"),
    log_every_n_steps: int = typer.Option(10, "--log-every-n-steps"),
    progress_bar: bool = typer.Option(True, "--progress/--no-progress"),
    score: str = typer.Option("linear", "--score", help="intensity: linear | norm"),
    pairs: str = typer.Option("batch", "--pairs", help="intensity: batch | random | all"),
    pairs_per_video: int = typer.Option(4, "--pairs-per-video"),
    tie_tol: float = typer.Option(0.0, "--tie-tol"),
    loss: str | None = typer.Option(
        None,
        "--loss",
        "--loss-type",
        "--loss_type",
        help="vce: bce|mse; valence_arousal: VAERR's --loss_type 1..10 or its name (ccc+ce, ...), mse+ccc, bins; "
        "v2v: ranknet|listnet|plackett",
    ),
    va_bins: int = typer.Option(20, "--va-bins", "--bins", help="valence_arousal: value bins (VAERR's --bins)."),
    clip_length: float | None = typer.Option(
        None, "--clip-length", "--clip_length", help="Seconds per clip (VA); 0: whole videos, as in VAERR."
    ),
    segments_per_file: int = typer.Option(
        1, "--segments-per-file", "--segments_per_file", help="VA: random clips per training video and epoch."
    ),
    dataset: str = typer.Option(
        "va_csv", "--dataset", help="VA label reader: va_csv, or VAERR's sewa_video | MSP_video | RECOLA."
    ),
    fine_tuning: str = typer.Option(
        "FT", "--fine-tuning", "--fine_tuning", help="VA: FT | Frozen3DConv | FullyFrozen (VAERR)."
    ),
    every_frame: bool = typer.Option(
        True, "--every-frame/--last-frame", help="VA: predict every frame (VAERR) or each clip from its last frame."
    ),
    drop_path: float | None = typer.Option(
        None, "--drop-path", "--drop_path", help="Stochastic depth rate (VideoMAE), passed to the model."
    ),
    monitor: str | None = typer.Option(None, "--monitor", help="Metric for the best checkpoint, e.g. val/acc1."),
    test_views: str | None = typer.Option(
        None, "--test-views", help="Final test on TxS views averaged (T segments x S crops), e.g. 2x3."
    ),
    resize: str = typer.Option("crop", "--resize", help="crop (short side + crop) | squash (to the input size)."),
    head_init_scale: float | None = typer.Option(
        None, "--head-init-scale", "--init_scale", help="Scale the new head's initial weights (VideoMAE: 0.001)."
    ),
    head_dropout: float | None = typer.Option(None, "--head-dropout", help="Dropout before the head."),
    head_bias: bool = typer.Option(True, "--head-bias/--no-head-bias", help="v2v: bias in the score layer."),
    v2v_listwise: str | None = typer.Option(None, "--v2v-listwise"),
    data2: str | None = typer.Option(None, "--data2", help="fusion: FIV2 annotation pickle."),
    emotion_checkpoint: str | None = typer.Option(None, "--emotion-checkpoint", help="fusion: emotion_dist run."),
    personality_checkpoint: str | None = typer.Option(
        None, "--personality-checkpoint", help="fusion: personality run."
    ),
) -> int:
    """Train TASK on your labels; writes a checkpoint folder (model.safetensors, configs, metrics.csv)."""
    from emovid.config import TrainConfig

    values = {k: v for k, v in ctx.params.items() if k not in ("config", "model_arg", "drop_path")}
    values["model_args"] = _parse_kv(model_arg)
    if drop_path is not None:
        values["model_args"]["drop_path_rate"] = drop_path
    if config is not None:
        from click.core import ParameterSource as PS  # noqa: N817

        given = {
            k: v
            for k, v in values.items()
            if _source(ctx, k) not in (getattr(PS, "DEFAULT", None), getattr(PS, "DEFAULT_MAP", None))
        }
        extra_model_args = given.pop("model_args", None) or {}  # --model-arg / --drop-path add to the recipe's
        cfg = TrainConfig.from_yaml(config, **given)
        cfg.model_args = {**cfg.model_args, **extra_model_args}
    else:
        cfg = TrainConfig.from_dict(values)
    _check_inputs(cfg)
    # Lightning (and, through torchmetrics, transformers) take seconds to import: only now that the recipe is sound.
    from emovid.train import train as run

    summary = run(cfg)
    typer.echo(json.dumps(summary, indent=2, default=str))
    return 0


def _check_inputs(cfg) -> None:
    """Label files that do not exist fail at once, before the seconds of importing the training engine."""
    import os

    from emovid.errors import InputNotFoundError

    for value, what in ((cfg.data, "label file or dataset folder"), (cfg.data2, "label file")):
        if value and not os.path.exists(value):
            raise InputNotFoundError(value, what)


def _parse_kv(items: list[str]) -> dict:
    import yaml

    from emovid.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg wants KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _source(ctx: typer.Context, name: str):
    try:
        return ctx.get_parameter_source(name)
    except Exception:  # pragma: no cover
        return None
