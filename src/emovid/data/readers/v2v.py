"""Video to Valence (V2V, Emodiversity): pairwise and listwise valence preferences.

Layout::

    v2v_dataset/
      metadata.json            same format as VCE's
      train_labels.json        {"comparisons": [["52694", "15036"], ...]}   the second video is preferred
      test_labels.json
      listwise_labels.json     {"comparisons": [["50986", "05956", "42507"], ...]}  least -> most preferred
      videos/ID.mp4

Records keep the file's order (least → most preferred), so a pairwise record ``(a, b)`` means *b* is preferred.
:func:`emovid.data.pairs.pairs_from_rankings` turns records into RankNet pairs.

Two judgements that order the same two videos oppositely (``[a, b]`` then ``[b, a]``, or inside lists) are a
``contradiction`` and a comparison repeated verbatim is a ``duplicate_comparison``: both are warnings, because
crowd annotations legitimately repeat and disagree; the records are kept. An empty ``comparisons`` list is an
``empty`` warning. Without metadata, ids must not name a file outside the dataset folder (``unsafe_path``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import Problem, Reporter, clip, contained, key_path, read_json, run_reader, show
from emovid.data.readers.vce import VideoMeta, load_metadata

V2V_SPLITS = ("train", "test", "listwise")
MAX_LIST = 4


@dataclass(frozen=True)
class V2VComparison:
    """One preference judgement.

    Attributes:
        video_ids: ids ordered least → most preferred (2 for pairwise, 2–4 for listwise).
        video_paths: resolved video files, same order.
        index: position in the file's ``comparisons`` list.
        split: ``train``, ``test`` or ``listwise`` (or the labels file's stem).
    """

    video_ids: tuple[str, ...]
    video_paths: tuple[Path, ...]
    index: int
    split: str

    @property
    def is_pair(self) -> bool:
        return len(self.video_ids) == 2

    @property
    def preferred(self) -> str:
        return self.video_ids[-1]

    @property
    def targets(self) -> dict[str, tuple[int, ...]]:
        """Rank of each video in the list, 0 = least preferred."""
        return {"rank": tuple(range(len(self.video_ids)))}


def read_v2v(
    path: str | os.PathLike,
    split: str = "train",
    metadata: str | os.PathLike | bool = True,
    problems: list[Problem] | None = None,
) -> list[V2VComparison]:
    """Read V2V comparisons.

    Args:
        path: the dataset folder (reads ``{split}_labels.json``) or a labels JSON file.
        split: ``train``, ``test`` or ``listwise`` when ``path`` is a folder. Lists of 2–4 ids are accepted for
            ``listwise``, exactly 2 otherwise.
        metadata: as for :func:`~emovid.data.readers.vce.read_vce`: with metadata every id must be in it and the
            video file comes from its ``file``; without, ids map to ``videos/ID.mp4``.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) bad JSON, a missing ``comparisons`` list, a comparison of the wrong
            length, non-string or repeated ids, unknown ids; the message names the file and the index.
    """
    path = Path(path)
    labels = path / f"{split}_labels.json" if path.is_dir() else path
    root = labels.parent
    name = split if path.is_dir() else labels.stem.removesuffix("_labels")
    meta = load_metadata(root, metadata, problems)
    return run_reader(_read, Reporter(labels, problems), root, name, meta)


def _read(rep: Reporter, root: Path, split: str, meta: dict[str, VideoMeta] | None) -> list[V2VComparison]:
    data = read_json(rep)
    if not isinstance(data, dict) or "comparisons" not in data:
        rep.fatal('expected a JSON object {"comparisons": [[id, id, ...], ...]}')
    comps = data["comparisons"]
    if not isinstance(comps, list):
        rep.fatal(f"'comparisons' must be a list, found {type(comps).__name__}", "comparisons")
    if not comps:
        rep("empty", "'comparisons' is empty: the file holds no judgements", "comparisons")
    lo, hi = (2, MAX_LIST) if split == "listwise" else (2, 2)
    out: list[V2VComparison] = []
    seen: dict[tuple[str, ...], int] = {}  # comparison -> first index
    order: dict[frozenset, tuple[str, int]] = {}  # pair of videos -> (the preferred one, first index saying so)
    for i, comp in enumerate(comps):
        where = key_path("comparisons", i)
        if not isinstance(comp, list):
            rep("malformed", f"expected a list of video ids, found {type(comp).__name__}", where)
            continue
        if not lo <= len(comp) <= hi:
            want = "2" if lo == hi else f"{lo}-{hi}"
            rep("malformed", f"expected {want} video ids, found {len(comp)}", where)
            continue
        bad = [j for j, v in enumerate(comp) if not isinstance(v, str) or not v.strip()]
        if bad:
            rep(
                "malformed",
                f"video ids must be non-empty strings, got {show(comp[bad[0]])}",
                key_path("comparisons", i, bad[0]),
            )
            continue
        if len(set(comp)) != len(comp):
            rep("malformed", f"a video appears twice in one comparison: {show(comp)}", where)
            continue
        if meta is not None:
            unknown = [v for v in comp if v not in meta]
            if unknown:
                rep("unknown_id", f"video id(s) {clip(', '.join(unknown), 200)} not in metadata.json", where)
                continue
            paths = tuple(root / meta[v].file for v in comp)  # metadata files are checked to stay inside root
        else:
            rels = [contained(rep, f"videos/{v}.mp4", where, "video id") for v in comp]
            if None in rels:
                continue
            paths = tuple(root / r for r in rels)
        _check_consistency(rep, tuple(comp), i, where, seen, order)
        out.append(V2VComparison(tuple(comp), paths, i, split))
    return out


def _check_consistency(
    rep: Reporter,
    comp: tuple[str, ...],
    i: int,
    where: str,
    seen: dict[tuple[str, ...], int],
    order: dict[frozenset, tuple[str, int]],
) -> None:
    """Warn when ``comp`` repeats an earlier comparison or reverses a preference an earlier one stated."""
    if comp in seen:
        rep("duplicate_comparison", f"repeats comparisons[{seen[comp]}] exactly", where)
        return
    seen[comp] = i
    clash = None
    for a_i, a in enumerate(comp):
        for b in comp[a_i + 1 :]:  # later in the list = preferred
            key = frozenset((a, b))
            prev = order.setdefault(key, (b, i))
            if prev[0] != b and clash is None:
                clash = (a, b, prev[1])
    if clash is not None:
        a, b, j = clash
        rep(
            "contradiction",
            f"prefers {show(b)} to {show(a)}, but comparisons[{j}] prefers {show(a)}; annotators disagree or ids "
            "are swapped",
            where,
        )
