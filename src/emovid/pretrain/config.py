"""The options of a pretraining run (:class:`PretrainConfig`) and the names of the files it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emovid.config import YamlConfig
from emovid.errors import ConfigError

METHODS = ("byol", "dino")
MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.yaml"
PRETRAIN_CONFIG = "pretrain_config.yaml"


@dataclass
class PretrainConfig(YamlConfig):
    """Everything ``emovid pretrain`` needs; saved as ``pretrain_config.yaml`` in the output folder.

    Clip geometry defaults to the model's ``pretrained_cfg`` (``num_frames``, ``frame_stride``, ``input_size``,
    ``in_chans``); VAERR's 100-frame clips are long, so ``num_frames`` overrides it for short runs.
    Options prefixed ``byol_``/``dino_`` (and the DINO temperatures/crops) only affect their method.
    """

    method: str = "byol"
    videos: str | None = None
    output_dir: str = "runs/pretrain"
    model: str = "resnet18_3dstem"
    pretrained: str | None = None  # continue from these weights instead of random init

    # clips
    num_frames: int | None = None
    frame_stride: int | None = None
    input_size: int | None = None  # global crop side; default: min(pretrained_cfg.input_size)

    # optimisation
    epochs: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.04
    warmup_epochs: float = 10.0
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    precision: str = "32-true"
    seed: int = 0
    num_workers: int = 2

    # augmentation
    crop_scale: tuple[float, float] = (0.4, 1.0)  # global views; smaller crops lose the face on face videos
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2  # RGB models only
    grayscale_p: float = 0.2  # RGB models only
    blur: bool = True

    # BYOL
    byol_hidden_dim: int = 4096
    byol_proj_dim: int = 256
    byol_tau: float = 0.996

    # DINO
    dino_hidden_dim: int = 2048
    dino_bottleneck_dim: int = 256
    dino_out_dim: int = 4096
    dino_momentum: float = 0.996
    norm_last_layer: bool = True
    freeze_last_layer: int = 1  # epochs during which the prototypes are not updated
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    local_crops: int = 6
    local_size: int | None = None  # default: 96/224 of the global size, as DINO
    local_frames: int | None = None  # default: num_frames
    local_crops_scale: tuple[float, float] = (0.05, 0.4)

    # hardware (Lightning)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False  # BYOL/DINO normalise over the global batch on many devices

    # run control
    resume: bool = False
    max_steps: int = -1
    limit_train_batches: float | None = None
    log_every_n_steps: int = 10
    progress_bar: bool = True

    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.method = str(self.method).lower()
        if self.method not in METHODS:
            raise ConfigError(f"unknown pretext method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("crop_scale", "local_crops_scale"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
                raise ConfigError(f"{name} must be two numbers 0 < min <= max <= 1, got {getattr(self, name)!r}")
            setattr(self, name, value)
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (the projection heads use batch normalisation)")
