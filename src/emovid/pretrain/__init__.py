"""Self-supervised pretext pretraining of a video front-end (VAERR): BYOL and DINO on unlabelled clips.

VAERR's finding is that a 3D-conv + ResNet-18 front-end pretrained without labels (LiRA, BYOL, DINO) beats one
trained from scratch on small affect datasets; VAERR takes that step from outside repositories. This package
does it on the training engine's terms: a Lightning ``LightningModule`` per method, a data module over every
video below a folder, DDP/multi-node/AMP/resume from Lightning, and a checkpoint directory (described in
:mod:`emovid.pretrain.engine`).

Modules: :mod:`~emovid.pretrain.config` (:class:`PretrainConfig`), :mod:`~emovid.pretrain.base` (the momentum
schedule and the Lightning module both methods share), :mod:`~emovid.pretrain.byol` and
:mod:`~emovid.pretrain.dino` (one method each), :mod:`~emovid.pretrain.augment` (clip augmentations),
:mod:`~emovid.pretrain.clips` (dataset, clip geometry, data module), :mod:`~emovid.pretrain.engine` (the run).

Library decision: ``lightly`` (the maintained PyPI package with BYOL/DINO heads and losses) imports
``torchvision`` at module level in ``lightly.loss`` and ``lightly.models`` (checked with lightly 1.6.0), and
torchvision cannot be installed next to the CPU torch build here; the two methods are therefore written out
below from the papers, with their equations in the docstrings.

Methods (``B`` batch, ``D`` backbone features):

* **BYOL** (Grill et al., 2020, "Bootstrap your own latent", NeurIPS): see :class:`BYOLModule`,
  :func:`byol_loss`, :func:`cosine_momentum`, :func:`ema_update`.
* **DINO** (Caron et al., 2021, "Emerging properties in self-supervised vision transformers", ICCV): see
  :class:`DINOModule`, :class:`DINOHead`, :func:`dino_loss`, :func:`update_center`, :func:`teacher_temperature`.

Video views (:class:`ClipAugment`, :class:`PretextClips`): each view of a video is its own *temporal crop* (a
clip of ``num_frames`` frames every ``frame_stride`` at an independent random position), then a random resized
spatial crop (the same window for every frame of the clip), a horizontal flip, colour jitter (brightness and
contrast; saturation and random greyscale only for RGB models), optional Gaussian blur, and the model's
normalisation. DINO adds ``local_crops`` small views (``local_size`` pixels, scale ``local_crops_scale``) seen by
the student only. All randomness of a sample comes from ``numpy.random.default_rng([seed, epoch, index])``, so
a resumed run sees the same views.

Optimisation (both methods): AdamW with linear warm-up and cosine decay of the learning rate per step;
biases and normalisation parameters get no weight decay (as DINO). The papers' LARS optimiser (BYOL) and
weight-decay schedule (DINO) are not reproduced; BYOL's solarisation and colour hue jitter are left out.
"""

from emovid.pretrain.augment import ClipAugment, ViewSpec, gaussian_blur, random_resized_crop_box
from emovid.pretrain.base import cosine_momentum, ema_update
from emovid.pretrain.byol import BYOLModule, byol_loss, byol_mlp
from emovid.pretrain.clips import Geometry, PretextClips, PretextDataModule, geometry, make_augments, view_specs
from emovid.pretrain.config import METHODS, MODEL_CONFIG, MODEL_FILE, PRETRAIN_CONFIG, PretrainConfig
from emovid.pretrain.dino import DINOHead, DINOModule, dino_loss, teacher_temperature, update_center
from emovid.pretrain.engine import ExportBackbone, build_backbone, find_videos, pretrain, save_backbone

__all__ = [
    "METHODS",
    "MODEL_CONFIG",
    "MODEL_FILE",
    "PRETRAIN_CONFIG",
    "BYOLModule",
    "ClipAugment",
    "DINOHead",
    "DINOModule",
    "ExportBackbone",
    "Geometry",
    "PretextClips",
    "PretextDataModule",
    "PretrainConfig",
    "ViewSpec",
    "build_backbone",
    "byol_loss",
    "byol_mlp",
    "cosine_momentum",
    "dino_loss",
    "ema_update",
    "find_videos",
    "gaussian_blur",
    "geometry",
    "make_augments",
    "pretrain",
    "random_resized_crop_box",
    "save_backbone",
    "teacher_temperature",
    "update_center",
    "view_specs",
]
