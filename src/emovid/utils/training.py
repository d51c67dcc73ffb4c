"""Pieces shared by the Lightning modules of training and pretraining."""

from __future__ import annotations

import math

import numpy as np
import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Per-step LR factor: linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_steps(trainer, warmup_epochs: float) -> int:
    """Optimiser steps in ``warmup_epochs`` epochs: the configured epochs' worth, whatever bounds the run.

    An epoch is ``ceil(batches / accumulate_grad_batches)`` steps (Lightning's own count, per rank under DDP);
    with ``--max-steps`` the run may end long before ``epochs`` do, but the warm-up still lasts the epochs asked
    for, not that fraction of ``max_steps``. Reads ``trainer.estimated_stepping_batches`` first, which makes
    Lightning count the training batches.
    """
    if warmup_epochs <= 0:
        return 0
    total = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    if not math.isfinite(batches):  # an iterable dataset without a length: its only step count is max_steps
        return 0
    per_epoch = math.ceil(batches / max(1, trainer.accumulate_grad_batches))
    warm = int(round(warmup_epochs * per_epoch))
    return min(warm, max(0, int(total) - 1)) if math.isfinite(total) else warm


def param_groups(named_params, weight_decay: float, **group) -> list[dict]:
    """Two AdamW groups: weight decay on weight matrices and kernels only.

    Biases, normalisation weights and scalars such as the retrieval head's ``logit_scale`` (every parameter with
    fewer than 2 dimensions) get none, as in CLIP and emovid's own pretraining: decaying them pulls gains and the
    temperature towards 0 for no regularisation benefit. Frozen parameters are left out; ``group`` (e.g. ``lr``)
    goes into both groups; an empty group is dropped.
    """
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("logit_scale") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **group},
        {"params": no_decay, "weight_decay": 0.0, **group},
    ]
    return [g for g in groups if g["params"]]


def zero_loss(module: torch.nn.Module) -> torch.Tensor:
    """A loss of 0 that reaches every trainable parameter (for a batch whose samples all failed to load).

    Returning ``None`` would make this rank skip the step; under DDP the other ranks then wait in the gradient
    all-reduce for ever. With this loss every rank runs backward and steps, contributing zero gradients.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return torch.zeros((), requires_grad=True)
    return sum(p.sum() for p in params) * 0.0


def capture_rng() -> dict:
    """Global torch (CPU and, when present, every CUDA device) and NumPy RNG states as plain tensors/numbers
    (checkpoints stay ``weights_only``-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
    }
    if torch.cuda.is_available():  # dropout on the GPU draws from the CUDA generators, not the CPU one
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict | None) -> None:
    """Undo :func:`capture_rng` (a resumed run then draws the same dropout masks as an uninterrupted one).

    CUDA states are restored when CUDA is available (a checkpoint written on a GPU machine and resumed on a
    CPU one restores the CPU and NumPy states only). The states are those of the process that wrote the
    checkpoint (rank 0 under DDP), as for the CPU and NumPy ones.
    """
    if not state:
        return
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        # as many devices as both runs have (resuming on fewer GPUs must not index a missing one)
        torch.cuda.set_rng_state_all(list(cuda)[: torch.cuda.device_count()])
