"""Deterministic "formula" weights for checkpoint-compatibility fixtures.

The fixture generators (``tools/gen_vaerr_fixtures.py``, ``tools/gen_emonext_fixtures.py``) fill a reference model
with these values, run it, and store only key names, shapes and a few outputs. Tests rebuild the same tensors from
the stored key names and shapes (the copy in ``tests/test_resnet3d_gru.py`` / ``tests/test_emonext.py`` must stay
identical), convert them with emovid's loader and compare outputs, so no weight files are committed.

Each tensor depends only on its key name and shape (seeded by the key's CRC-32) and is scaled so activations stay
in a sane range: weights of rank >= 2 ~ N(0, 1/fan_in), 1-D weights ~ 1 + N(0, 0.1), biases ~ N(0, 0.1), BN running
variances ~ 1 + 0.5 |N(0, 1)|.
"""

from __future__ import annotations

import math
import zlib

import torch


def formula_tensor(key: str, shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.long)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    t = torch.randn(tuple(shape), generator=g)
    if key.endswith("running_var"):
        return 1.0 + 0.5 * t.abs()
    if len(shape) >= 2:
        return t / math.sqrt(math.prod(shape[1:]))
    if key.endswith("weight"):
        return 1.0 + 0.1 * t
    return 0.1 * t


def formula_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: formula_tensor(k, s) for k, s in shapes.items()}


def formula_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
