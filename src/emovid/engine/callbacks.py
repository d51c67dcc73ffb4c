"""Lightning callbacks that training (:mod:`emovid.train`) and pretraining (:mod:`emovid.pretrain`) share."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from emovid.data.datasets import EpochRef


class EpochSetter(Callback):
    """Write the trainer's epoch into a shared :class:`~emovid.data.datasets.EpochRef` as each training epoch starts.

    Samplers and datasets read the ref when they draw (shuffling, pairs, augmentations), so the loader of epoch
    ``e`` and its worker processes, started after this hook, draw from ``e`` — on a resumed run as well.
    """

    def __init__(self, ref: EpochRef):
        self.ref = ref

    def on_train_epoch_start(self, trainer, pl_module):
        self.ref.epoch = trainer.current_epoch


_EpochSetter = EpochSetter  # the name training and pretraining used before the engine package

__all__ = ["EpochSetter"]
