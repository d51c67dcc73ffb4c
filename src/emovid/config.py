"""Training configuration: one flat dataclass, readable from YAML recipes and overridable from the CLI."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emovid.errors import ConfigError


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls`` (a fresh value for ``default_factory`` fields).

    Command-line options read their defaults from here, so a default is written once, in the dataclass.
    """
    f = cls.__dataclass_fields__[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ConfigError(f"{cls.__name__}.{name} has no default")


class YamlConfig:
    """``from_yaml`` / ``from_dict`` / ``to_dict`` / ``save`` for flat dataclass configs (unknown keys rejected)."""

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any):
        """Read a recipe; ``overrides`` (e.g. from the command line) win over the file."""
        from emovid.utils.paths import check_regular_file

        p = Path(check_regular_file(path, "config file"))
        if p.stat().st_size > 16 << 20:
            raise ConfigError(f"{p}: {p.stat().st_size} bytes is far too large for a recipe")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from e
        except (RecursionError, ValueError, MemoryError) as e:  # deep nesting, integers past Python's digit limit
            raise ConfigError(
                f"{p}: cannot be read as a recipe ({type(e).__name__}); is it really a YAML recipe?"
            ) from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a recipe must be a mapping of option: value")
        return cls.from_dict({**data, **overrides}, source=str(p))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def save(self, path: str | os.PathLike) -> None:
        from emovid.utils.io import atomic_open

        with atomic_open(path) as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


@dataclass
class TrainConfig(YamlConfig):
    """Everything ``emovid train`` needs; saved as ``train_config.yaml`` in the checkpoint directory.

    Task-specific fields are ignored by tasks that do not use them.
    """

    task: str = "intensity"
    data: str | None = None  # label file or dataset folder (task-specific; RankNet-X3D: --data_csv)
    video_root: str | None = None
    output_dir: str = "runs/emovid"
    model: str | None = None  # default: the task's
    pretrained: str | None = None  # unset: the model's default weights (default_weights); none/random: random init
    allow_size_mismatch: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the model function
    num_frames: int | None = None  # clip geometry overrides of the model's pretrained_cfg
    frame_stride: int | None = None
    input_size: int | None = None

    # optimisation
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-5
    head_lr: float | None = None  # default: lr (heads on a frozen/cached backbone want more, e.g. 1e-3)
    weight_decay: float = 0.05
    weight_decay_1d: bool = False  # also decay biases and norm weights (VAERR gives AdamW model.parameters())
    optimizer: str = "adamw"  # adamw | adam | sgd (emovid.train.optim)
    opt_betas: tuple[float, float] = (0.9, 0.999)  # adamw/adam
    opt_eps: float = 1e-8
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    layer_decay: float | None = None  # layer-wise LR decay (VideoMAE fine-tuning: 0.75); needs a group_matcher
    lr_reference_batch: int | None = None  # lr and min_lr scaled by total batch / this (VideoMAE: 256)
    scheduler: str = "cosine"  # cosine (per step) | cosine_epoch (VAERR's per-epoch CosineScheduler) | constant
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # the cosine ends here (VideoMAE: 1e-6)
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    precision: str = "32-true"
    early_stopping_patience: int | None = None
    seed: int = 0

    # data
    val_fraction: float = 0.2
    split_seed: int = 0
    train_sampler: str | None = None  # e.g. random:16x4; default from the model's pretrained_cfg
    eval_sampler: str | None = None  # e.g. center:16x4
    num_workers: int = 2
    strict: bool = False  # fail on the first unreadable video instead of skipping it
    freeze_backbone: bool = False
    cache_features: bool = False
    augment: bool = True

    # hardware (Lightning)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"

    # run control
    resume: bool = False
    max_steps: int = -1
    limit_train_batches: float | None = None
    log_every_n_steps: int = 10
    progress_bar: bool = True

    # evaluation
    monitor: str | None = None  # metric picking the best checkpoint (default: the task's), e.g. val/acc1
    test_views: str | None = None  # final test on TxS views (T temporal segments x S spatial crops) averaged, e.g. 2x3
    resize: str = "crop"  # crop (short side, then centre/random crop) | squash (resize frames to the input size)

    # head options
    head_init_scale: float | None = None  # multiply the new head's initial weights and bias (VideoMAE: 0.001)
    head_dropout: float | None = None  # dropout before the head (default: the task's)
    head_bias: bool = True  # v2v: Linear(D, 1, bias=False) as in the Emodiversity fork

    # task options
    score: str = "linear"  # intensity: linear (RankNet-X3D's score head) | norm (score = ||embedding||)
    pairs: str = "batch"  # intensity: batch (all pairs inside each batch) | random | all
    pairs_per_video: int = 4
    tie_tol: float = 0.0
    loss: str | None = None  # vce: bce|mse; valence_arousal: VAERR's 1..10 or names, mse+ccc, bins; v2v: ranknet|...
    va_bins: int = 20  # valence_arousal: VAERR's --bins
    clip_length: float | None = None  # valence_arousal: seconds per clip at each video's fps (VAERR's --clip_length)
    segments_per_file: int = 1  # valence_arousal: random clips per training video and epoch (VAERR's, default 3 there)
    dataset: str = "va_csv"  # valence_arousal: label reader; VAERR's sewa_video | MSP_video | RECOLA
    fine_tuning: str = "FT"  # valence_arousal: VAERR's FT | Frozen3DConv | FullyFrozen
    every_frame: bool = True  # valence_arousal: a prediction per frame (VAERR) or per clip from its last frame
    v2v_listwise: str | None = None  # v2v: listwise_labels.json for list training/eval
    data2: str | None = None  # fusion: the FIV2 annotation pickle (--data is the MOSEI CSV)
    emotion_checkpoint: str | None = None  # fusion: trained emotion_dist run
    personality_checkpoint: str | None = None  # fusion: trained personality run

    extra: dict[str, Any] = field(default_factory=dict)
