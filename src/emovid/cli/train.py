"""``emovid train TASK``: every task on one Lightning engine."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app
from emovid.config import TrainConfig, default_of

TASK_HELP = (
    "intensity (rank videos by how strongly they show emotion) | vce (27 emotion intensities) | v2v (which of two "
    "videos is preferred) | valence_arousal (valence and arousal over time) | emotion_dist (MOSEI emotion "
    "distribution) | personality (First Impressions OCEAN traits) | fusion (both at once) | retrieval (text-video "
    "search with emotion). emotion_dist, personality and fusion train on `emovid faces embed` output."
)


def _default(name: str):
    """The default of ``--NAME`` is TrainConfig's: written once, in the dataclass."""
    return default_of(TrainConfig, name)


@app.command(context_settings={"allow_interspersed_args": True})
def train(
    ctx: typer.Context,
    task: str = typer.Argument(..., help=TASK_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML recipe (see configs/); flags override it."),
    data: str | None = typer.Option(
        _default("data"), "--data", "--data-csv", "--data_csv", help="Labels: CSV file or dataset folder."
    ),
    video_root: str | None = typer.Option(
        _default("video_root"), "--video-root", "--video_root", help="Folder of the videos."
    ),
    output_dir: str = typer.Option(
        _default("output_dir"), "--output-dir", "--output_dir", "-o", help="Checkpoint folder."
    ),
    model: str | None = typer.Option(
        _default("model"), "--model", help="Backbone (emovid list-models); default per task."
    ),
    pretrained: str | None = typer.Option(
        _default("pretrained"),
        "--pretrained",
        "--model-path",
        "--model_path",
        help="Weights to start from: tag, file, local-dir:PATH, hub id, URL, or none (random init). Default: the "
        "model's default tag (* in `emovid list-models`), downloaded once into $EMOVID_HOME/weights.",
    ),
    allow_size_mismatch: bool = typer.Option(
        _default("allow_size_mismatch"),
        "--allow-size-mismatch",
        "--allow_size_mismatch",
        help="Load what fits (skip tensors of another shape).",
    ),
    model_arg: list[str] = typer.Option([], "--model-arg", help="KEY=VALUE passed to the model (repeatable)."),
    num_frames: int | None = typer.Option(
        _default("num_frames"), "--num-frames", help="Frames per clip (default: the model's)."
    ),
    frame_stride: int | None = typer.Option(
        _default("frame_stride"), "--frame-stride", help="Frame step inside a clip."
    ),
    input_size: int | None = typer.Option(
        _default("input_size"), "--input-size", help="Square input size (default: the model's)."
    ),
    epochs: int = typer.Option(_default("epochs"), "--epochs"),
    batch_size: int = typer.Option(_default("batch_size"), "--batch-size", "--batch_size"),
    lr: float = typer.Option(_default("lr"), "--lr", help="Learning rate (backbone)."),
    head_lr: float | None = typer.Option(
        _default("head_lr"), "--head-lr", help="Learning rate of the head (default: --lr)."
    ),
    weight_decay: float = typer.Option(_default("weight_decay"), "--weight-decay", "--weight_decay"),
    weight_decay_1d: bool = typer.Option(
        _default("weight_decay_1d"),
        "--weight-decay-1d/--no-weight-decay-1d",
        help="Decay biases and norm weights too (VAERR).",
    ),
    optimizer: str = typer.Option(_default("optimizer"), "--optimizer", "--opt", help="adamw | adam | sgd"),
    opt_betas: tuple[float, float] = typer.Option(
        _default("opt_betas"), "--opt-betas", "--opt_betas", help="Adam betas."
    ),
    opt_eps: float = typer.Option(_default("opt_eps"), "--opt-eps", "--opt_eps"),
    momentum: float = typer.Option(_default("momentum"), "--momentum", help="SGD momentum."),
    nesterov: bool = typer.Option(_default("nesterov"), "--nesterov/--no-nesterov", help="SGD with Nesterov momentum."),
    layer_decay: float | None = typer.Option(
        _default("layer_decay"),
        "--layer-decay",
        "--layer_decay",
        help="Layer-wise LR decay, e.g. 0.75 (backbones with a group_matcher).",
    ),
    lr_reference_batch: int | None = typer.Option(
        _default("lr_reference_batch"),
        "--lr-reference-batch",
        help="Scale --lr and --min-lr by total batch / this (VideoMAE: 256).",
    ),
    scheduler: str = typer.Option(
        _default("scheduler"), "--scheduler", help="cosine (per step) | cosine_epoch (VAERR) | constant"
    ),
    warmup_epochs: float = typer.Option(_default("warmup_epochs"), "--warmup-epochs", "--warmup_epochs"),
    min_lr: float = typer.Option(_default("min_lr"), "--min-lr", "--min_lr", help="Where the cosine ends."),
    accumulate_grad_batches: int = typer.Option(_default("accumulate_grad_batches"), "--accumulate-grad-batches"),
    gradient_clip_val: float | None = typer.Option(_default("gradient_clip_val"), "--gradient-clip-val"),
    precision: str = typer.Option(_default("precision"), "--precision", help="32-true | 16-mixed | bf16-mixed"),
    early_stopping_patience: int | None = typer.Option(
        _default("early_stopping_patience"), "--early-stopping-patience"
    ),
    seed: int = typer.Option(_default("seed"), "--seed"),
    val_fraction: float = typer.Option(_default("val_fraction"), "--val-fraction"),
    split_seed: int = typer.Option(_default("split_seed"), "--split-seed"),
    train_sampler: str | None = typer.Option(_default("train_sampler"), "--train-sampler", help="e.g. random:16x4"),
    eval_sampler: str | None = typer.Option(_default("eval_sampler"), "--eval-sampler", help="e.g. center:16x4"),
    num_workers: int = typer.Option(_default("num_workers"), "--num-workers", "--workers"),
    strict: bool = typer.Option(
        _default("strict"), "--strict", help="Fail on the first unreadable video instead of skipping."
    ),
    freeze_backbone: bool = typer.Option(_default("freeze_backbone"), "--freeze-backbone"),
    cache_features: bool = typer.Option(
        _default("cache_features"),
        "--cache-features",
        help="Frozen backbone: embed each video once, train the head on the cache.",
    ),
    augment: bool = typer.Option(_default("augment"), "--augment/--no-augment"),
    accelerator: str = typer.Option(_default("accelerator"), "--accelerator"),
    devices: str = typer.Option(_default("devices"), "--devices", help="auto, a count, or a list like 0,1"),
    num_nodes: int = typer.Option(_default("num_nodes"), "--num-nodes"),
    strategy: str = typer.Option(
        _default("strategy"),
        "--strategy",
        help="auto | ddp | ddp_find_unused_parameters_true | deepspeed_stage_1 | deepspeed_stage_2 | ... "
        "(Lightning's names; DeepSpeed needs pip install deepspeed)",
    ),
    resume: bool = typer.Option(_default("resume"), "--resume", help="Continue the run in --output-dir exactly."),
    max_steps: int = typer.Option(_default("max_steps"), "--max-steps"),
    log_every_n_steps: int = typer.Option(_default("log_every_n_steps"), "--log-every-n-steps"),
    progress_bar: bool = typer.Option(_default("progress_bar"), "--progress/--no-progress"),
    score: str = typer.Option(_default("score"), "--score", help="intensity: linear | norm"),
    pairs: str = typer.Option(_default("pairs"), "--pairs", help="intensity: batch | random | all"),
    pairs_per_video: int = typer.Option(_default("pairs_per_video"), "--pairs-per-video"),
    tie_tol: float = typer.Option(_default("tie_tol"), "--tie-tol"),
    loss: str | None = typer.Option(
        _default("loss"),
        "--loss",
        "--loss-type",
        "--loss_type",
        help="vce: bce|mse; valence_arousal: VAERR's --loss_type 1..10 or its name (ccc+ce, ...), mse+ccc, bins; "
        "v2v: ranknet|listnet|plackett",
    ),
    va_bins: int = typer.Option(
        _default("va_bins"), "--va-bins", "--bins", help="valence_arousal: value bins (VAERR's --bins)."
    ),
    clip_length: float | None = typer.Option(
        _default("clip_length"),
        "--clip-length",
        "--clip_length",
        help="Seconds per clip (VA); 0: whole videos, as in VAERR.",
    ),
    segments_per_file: int = typer.Option(
        _default("segments_per_file"),
        "--segments-per-file",
        "--segments_per_file",
        help="VA: random clips per training video and epoch.",
    ),
    dataset: str = typer.Option(
        _default("dataset"), "--dataset", help="VA label reader: va_csv, or VAERR's sewa_video | MSP_video | RECOLA."
    ),
    fine_tuning: str = typer.Option(
        _default("fine_tuning"), "--fine-tuning", "--fine_tuning", help="VA: FT | Frozen3DConv | FullyFrozen (VAERR)."
    ),
    every_frame: bool = typer.Option(
        _default("every_frame"),
        "--every-frame/--last-frame",
        help="VA: predict every frame (VAERR) or each clip from its last frame.",
    ),
    drop_path: float | None = typer.Option(
        None, "--drop-path", "--drop_path", help="Stochastic depth rate (VideoMAE), passed to the model."
    ),
    monitor: str | None = typer.Option(
        _default("monitor"), "--monitor", help="Metric for the best checkpoint, e.g. val/acc1."
    ),
    test_views: str | None = typer.Option(
        _default("test_views"),
        "--test-views",
        help="Final test on TxS views averaged (T segments x S crops), e.g. 2x3.",
    ),
    resize: str = typer.Option(
        _default("resize"), "--resize", help="crop (short side + crop) | squash (to the input size)."
    ),
    head_init_scale: float | None = typer.Option(
        _default("head_init_scale"),
        "--head-init-scale",
        "--init_scale",
        help="Scale the new head's initial weights (VideoMAE: 0.001).",
    ),
    head_dropout: float | None = typer.Option(
        _default("head_dropout"), "--head-dropout", help="Dropout before the head."
    ),
    head_bias: bool = typer.Option(
        _default("head_bias"), "--head-bias/--no-head-bias", help="v2v: bias in the score layer."
    ),
    v2v_listwise: str | None = typer.Option(_default("v2v_listwise"), "--v2v-listwise"),
    data2: str | None = typer.Option(_default("data2"), "--data2", help="fusion: FIV2 annotation pickle."),
    emotion_checkpoint: str | None = typer.Option(
        _default("emotion_checkpoint"), "--emotion-checkpoint", help="fusion: emotion_dist run."
    ),
    personality_checkpoint: str | None = typer.Option(
        _default("personality_checkpoint"), "--personality-checkpoint", help="fusion: personality run."
    ),
) -> int:
    """Train TASK on your labels; writes a checkpoint folder (model.safetensors, configs, metrics.csv)."""
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
