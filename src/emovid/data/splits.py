"""Deterministic train/validation splits by video (or by group), so no video lands in both.

Two methods:

* ``permutation`` (default): the unique ids, sorted, are shuffled with ``seed`` and the first
  ``round(n * val_fraction)`` (at least 1 and at most ``n - 1`` when ``n >= 2``) go to validation. Exact sizes;
  independent of input order.
* ``hash``: an id goes to validation when ``sha256(f"{seed}:{id}")`` maps below ``val_fraction``. Sizes are
  only approximately the fraction, but an id's side never changes when videos are added or removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
METHODS = ("permutation", "hash")


@dataclass(frozen=True)
class Split:
    """Disjoint id lists, each in first-appearance order of the input."""

    train: list
    val: list


def _hash_unit(seed: int, key: Hashable) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_ids(ids: Iterable[Hashable], val_fraction: float = 0.2, seed: int = 0, method: str = "permutation") -> Split:
    """Split ids (duplicates collapse to one) into train and validation.

    Args:
        ids: video ids (or group ids).
        val_fraction: share of ids for validation, in [0, 1).
        seed: split seed.
        method: ``permutation`` or ``hash`` (see the module docstring).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    unique = list(dict.fromkeys(ids))
    if method == "hash":
        val_set = {i for i in unique if _hash_unit(seed, i) < val_fraction}
    elif method == "permutation":
        n = len(unique)
        n_val = int(round(n * val_fraction))
        if n >= 2 and val_fraction > 0:
            n_val = min(max(n_val, 1), n - 1)
        order = sorted(unique, key=str)
        perm = np.random.default_rng(seed).permutation(n)
        val_set = {order[i] for i in perm[:n_val]}
    else:
        raise ValueError(f"unknown split method {method!r}; choose one of {', '.join(METHODS)}")
    return Split([i for i in unique if i not in val_set], [i for i in unique if i in val_set])


def split_records(
    records: Sequence[T],
    val_fraction: float = 0.2,
    seed: int = 0,
    method: str = "permutation",
    key: Callable[[T], Hashable] | None = None,
) -> tuple[list[T], list[T]]:
    """Split records so that all records sharing a key end on the same side.

    Args:
        records: anything with a ``video_id`` attribute, or use ``key``.
        key: the grouping key; defaults to ``video_id`` (use e.g. ``lambda r: r.youtube_id`` for FIV2 clips
            cut from one source video).
    """
    key = key or (lambda r: r.video_id)
    s = split_ids((key(r) for r in records), val_fraction, seed, method)
    val = set(s.val)
    train_recs = [r for r in records if key(r) not in val]
    val_recs = [r for r in records if key(r) in val]
    return train_recs, val_recs


__all__ = ["METHODS", "Split", "split_ids", "split_records"]
