"""Video to Valence (V2V, seed 004): pairwise and listwise valence preferences.

Layout::

    v2v_dataset/
      metadata.json            same format as VCE's
      train_labels.json        {"comparisons": [["52694", "15036"], ...]}   the second video is preferred
      test_labels.json
      listwise_labels.json     {"comparisons": [["50986", "05956", "42507"], ...]}  least -> most preferred
      videos/ID.mp4

Records keep the file's order (least → most preferred), so a pairwise record ``(a, b)`` means *b* is preferred.
:func:`emovid.data.pairs.pairs_from_rankings` turns records into RankNet pairs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import Problem, Reporter, key_path, read_json, run_reader
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
    lo, hi = (2, MAX_LIST) if split == "listwise" else (2, 2)
    out: list[V2VComparison] = []
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
                f"video ids must be non-empty strings, got {comp[bad[0]]!r}",
                key_path("comparisons", i, bad[0]),
            )
            continue
        if len(set(comp)) != len(comp):
            rep("malformed", f"a video appears twice in one comparison: {comp}", where)
            continue
        if meta is not None:
            unknown = [v for v in comp if v not in meta]
            if unknown:
                rep("unknown_id", f"video id(s) {', '.join(unknown)} not in metadata.json", where)
                continue
            paths = tuple(root / meta[v].file for v in comp)
        else:
            paths = tuple(root / "videos" / f"{v}.mp4" for v in comp)
        out.append(V2VComparison(tuple(comp), paths, i, split))
    return out
