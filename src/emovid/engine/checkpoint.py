"""Lightning checkpoints of a run folder, for training and pretraining alike::

    OUTPUT_DIR/checkpoints/last.ckpt   rewritten after every epoch: what --resume continues from
    OUTPUT_DIR/checkpoints/best.ckpt   the epoch with the best monitored metric (training)

* :func:`last_checkpoint` / :func:`best_checkpoint` — the ``ModelCheckpoint`` callbacks writing them;
* :func:`check_run_folder` — refuses to resume a folder without a run, or to start a new run over one;
* :func:`resume_epoch` — the epoch a resumed run starts in (before Lightning's own hooks have said so);
* :func:`safe_checkpoint_io` — Lightning's checkpoint reader, going through :func:`emovid.models.hub.load_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

from emovid.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"


def last_checkpoint(out: str | os.PathLike, **options):
    """The callback writing ``OUT/checkpoints/last.ckpt`` after every epoch (``options``: more ``ModelCheckpoint``
    arguments). Lightning's ``save_last`` only refreshes ``last.ckpt`` when a top-k file is written; resuming needs
    every epoch, so this is a checkpoint of its own that monitors nothing."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=Path(out) / CHECKPOINT_DIR, filename="last", monitor=None, save_top_k=1, **options)


def best_checkpoint(out: str | os.PathLike, monitor: str, mode: str):
    """The callback keeping ``OUT/checkpoints/best.ckpt``: the epoch with the best ``monitor`` (``mode`` min/max)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=Path(out) / CHECKPOINT_DIR, filename="best", monitor=monitor, mode=mode, save_top_k=1
    )


def check_run_folder(out: str | os.PathLike, resume: bool) -> Path:
    """``OUT/checkpoints/last.ckpt`` of a run folder, after refusing to resume nothing or to overwrite a run."""
    last = Path(out) / CHECKPOINT_DIR / "last.ckpt"
    if resume and not last.exists():
        raise ConfigError(f"{out}: nothing to resume (no checkpoints/last.ckpt); drop --resume to start a new run")
    if not resume and last.exists():
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or choose another --output-dir")
    return last


def resume_epoch(ckpt: str | os.PathLike) -> int:
    """The epoch a run resumed from ``ckpt`` starts in.

    Lightning may build the loaders (and their workers) before it restores its epoch counter, so the shared
    :class:`~emovid.data.datasets.EpochRef` is set from the checkpoint first: the epochs the fit loop finished, or,
    for checkpoints without loop state, the saved epoch plus one.
    """
    from emovid.models.hub import load_checkpoint

    state = load_checkpoint(ckpt)
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(state.get("epoch", -1)) + 1


_resume_epoch = resume_epoch  # the name training and pretraining used before the engine package


def safe_checkpoint_io():
    """Lightning's checkpoint reader/writer, reading through :func:`~emovid.models.hub.load_checkpoint`.

    Lightning's own ``torch.load`` follows torch's ``weights_only`` default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    turns off; ours is safe unless the user trusts checkpoints (``--trust-checkpoint``).
    """
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from emovid.models.hub import load_checkpoint

    class SafeCheckpointIO(TorchCheckpointIO):
        def load_checkpoint(self, path, map_location=None, weights_only=None):
            # weights_only from Lightning is ignored: what may be unpickled is decided by trust alone
            return load_checkpoint(path, map_location=map_location or "cpu")

    return SafeCheckpointIO()


__all__ = [
    "CHECKPOINT_DIR",
    "best_checkpoint",
    "check_run_folder",
    "last_checkpoint",
    "resume_epoch",
    "safe_checkpoint_io",
]
