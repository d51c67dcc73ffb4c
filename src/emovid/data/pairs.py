"""RankNet pairs from scores (RankNet-X3D) and from preference lists (V2V).

For videos *A* and *B* with scores ``s_A`` and ``s_B`` the target is

* ``t = 1``   when ``s_A - s_B >  tie_tol`` (A is more intense),
* ``t = 0``   when ``s_B - s_A >  tie_tol``,
* ``t = 0.5`` when ``|s_A - s_B| <= tie_tol`` (a tie; ``tie_tol = 0`` means exactly equal).

The comparison with ``tie_tol`` allows floating-point rounding (a relative 1e-9), so scores 1.0 and 1.1 are a
tie at ``tie_tol = 0.1`` although ``1.1 - 1.0`` is a hair above 0.1 in binary.

Two strategies: ``all`` pairs ``i < j`` (n(n-1)/2, for small sets) or ``random``: for every video, ``k``
distinct random partners, re-drawn each epoch and reproducible from ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

STRATEGIES = ("all", "random")


class Pair(NamedTuple):
    """Indices into the score list and the RankNet target (1: ``a`` ranks higher, 0: ``b``, 0.5: tie)."""

    a: int
    b: int
    target: float


def pair_targets_array(score_a: ArrayLike, score_b: ArrayLike, tie_tol: float = 0.0) -> np.ndarray:
    """The RankNet targets of score arrays ``score_a`` and ``score_b`` (see the module docstring).

    The one tie rule of the package: sampled pairs, validation pairs and the in-batch pairs of
    :func:`emovid.losses.pair_targets` all call it. Differences are taken in float64, so give the scores as
    read (a float32 copy of 1.1 is 1.1000000238 and would no longer tie with 1.0 at ``tie_tol = 0.1``).
    """
    if tie_tol < 0:
        raise ValueError("tie_tol must be >= 0")
    d = np.asarray(score_a, np.float64) - np.asarray(score_b, np.float64)
    slack = _slack(tie_tol)
    return np.where(d > slack, 1.0, np.where(-d > slack, 0.0, 0.5))


def pair_target(score_a: float, score_b: float, tie_tol: float = 0.0) -> float:
    """The RankNet target for scores ``score_a`` and ``score_b`` (see the module docstring)."""
    return float(pair_targets_array(score_a, score_b, tie_tol))


def _slack(tie_tol: float) -> float:
    return tie_tol * (1 + 1e-9) + 1e-12 if tie_tol > 0 else 0.0


def _targets(s: np.ndarray, a: np.ndarray, b: np.ndarray, tie_tol: float) -> np.ndarray:
    return pair_targets_array(s[a], s[b], tie_tol)


def _pairs(a: np.ndarray, b: np.ndarray, t: np.ndarray, include_ties: bool) -> list[Pair]:
    keep = np.ones(len(t), bool) if include_ties else t != 0.5
    return [Pair(int(i), int(j), float(x)) for i, j, x in zip(a[keep], b[keep], t[keep], strict=False)]


def all_pairs(scores: Sequence[float], tie_tol: float = 0.0, include_ties: bool = True) -> list[Pair]:
    """Every pair ``(i, j)`` with ``i < j``."""
    if tie_tol < 0:
        raise ValueError("tie_tol must be >= 0")
    s = np.asarray(scores, np.float64)
    a, b = np.triu_indices(len(s), k=1)
    return _pairs(a, b, _targets(s, a, b, tie_tol), include_ties)


def random_pairs(
    scores: Sequence[float],
    k: int,
    seed: int = 0,
    epoch: int = 0,
    tie_tol: float = 0.0,
    include_ties: bool = True,
) -> list[Pair]:
    """For each video ``i`` (as ``a``), ``min(k, n - 1)`` distinct random partners ``j != i`` (as ``b``).

    The draw depends only on ``(seed, epoch)`` and the number of videos.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    if tie_tol < 0:
        raise ValueError("tie_tol must be >= 0")
    s = np.asarray(scores, np.float64)
    n = len(s)
    if n < 2:
        return []
    m = min(k, n - 1)
    rng = np.random.default_rng([int(seed), int(epoch)])
    # Rank random keys per row and skip the diagonal: m distinct partners per video in one vectorised draw.
    keys = rng.random((n, n))
    np.fill_diagonal(keys, np.inf)
    partners = np.argsort(keys, axis=1, kind="stable")[:, :m]
    a = np.repeat(np.arange(n), m)
    b = partners.reshape(-1)
    return _pairs(a, b, _targets(s, a, b, tie_tol), include_ties)


def build_pairs(
    scores: Sequence[float],
    strategy: str = "all",
    k: int = 4,
    seed: int = 0,
    epoch: int = 0,
    tie_tol: float = 0.0,
    include_ties: bool = True,
) -> list[Pair]:
    """Pairs by ``strategy`` (``all`` or ``random``; see :func:`all_pairs`, :func:`random_pairs`)."""
    if strategy == "all":
        return all_pairs(scores, tie_tol, include_ties)
    if strategy == "random":
        return random_pairs(scores, k, seed, epoch, tie_tol, include_ties)
    raise ValueError(f"unknown pair strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


class PairSampler:
    """Pairs for each epoch: fixed for ``all``, re-drawn per epoch (reproducibly) for ``random``.

    Args:
        scores: one score per video.
        strategy: ``all`` or ``random``.
        k: partners per video per epoch for ``random``.
        seed: base seed.
        tie_tol: tie tolerance for the targets.
        include_ties: keep ``t = 0.5`` pairs.
    """

    def __init__(
        self,
        scores: Sequence[float],
        strategy: str = "random",
        k: int = 4,
        seed: int = 0,
        tie_tol: float = 0.0,
        include_ties: bool = True,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown pair strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.scores = np.asarray(scores, np.float64)
        self.strategy, self.k, self.seed, self.tie_tol, self.include_ties = strategy, k, seed, tie_tol, include_ties
        self._fixed = all_pairs(self.scores, tie_tol, include_ties) if strategy == "all" else None

    def pairs(self, epoch: int = 0) -> list[Pair]:
        if self._fixed is not None:
            return self._fixed
        return random_pairs(self.scores, self.k, self.seed, epoch, self.tie_tol, self.include_ties)


def pairs_from_rankings(rankings: Sequence[Sequence[Hashable]]) -> list[tuple[Hashable, Hashable, float]]:
    """RankNet pairs from lists ordered least → most preferred (V2V pairwise and listwise).

    Every ``i < j`` in a list gives ``(list[i], list[j], 0.0)``: the second item is the preferred one, so the
    target for "A ranks higher" is 0. Duplicate pairs across lists are kept (each is a separate judgement).
    """
    out: list[tuple[Hashable, Hashable, float]] = []
    for ranking in rankings:
        items = list(ranking)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                out.append((items[i], items[j], 0.0))
    return out


__all__ = [
    "STRATEGIES",
    "Pair",
    "PairSampler",
    "all_pairs",
    "build_pairs",
    "pair_target",
    "pair_targets_array",
    "pairs_from_rankings",
    "random_pairs",
]
