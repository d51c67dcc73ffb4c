"""Labels and data: format readers, ranking pairs, splits, validation and synthetic labelled videos.

* :mod:`emovid.data.readers` — one reader per public label format, returning typed records.
* :mod:`emovid.data.pairs` — RankNet pairs (t = 1 / 0 / 0.5) from scores or preference lists.
* :mod:`emovid.data.splits` — deterministic train/val splits by video.
* :mod:`emovid.data.check` — ``emovid data check``.
* :mod:`emovid.data.synth` — ``emovid synth``: drawn-face videos with labels in every format.
"""

from emovid.data.pairs import Pair, PairSampler, all_pairs, build_pairs, pair_target, pairs_from_rankings, random_pairs
from emovid.data.readers import *  # noqa: F403
from emovid.data.readers import __all__ as _readers_all
from emovid.data.splits import Split, split_ids, split_records

__all__ = [
    *_readers_all,
    "Pair",
    "PairSampler",
    "Split",
    "all_pairs",
    "build_pairs",
    "pair_target",
    "pairs_from_rankings",
    "random_pairs",
    "split_ids",
    "split_records",
]
