"""Text search over a video index, and the original TODO: how the emotion term changes a query's ranking.

:class:`Searcher` opens an index folder and the query encoder that matches it: in ``zero-shot`` mode
all-MiniLM-L6-v2 plus the emotion-prompt term, in ``model`` mode the trained checkpoint's text tower with its
emotion embedding. A query's emotions are the ones given (``--emotion``), else the ones its words name
(:func:`~emovid.retrieval.text.emotions_from_text`), else none.

:func:`compare` runs a query with and without its emotion term and reports where every video moved, and — for
the query's emotions — the precision@k and mean rank of the videos showing them (the original "track the ranking
change" TODO). :func:`emotion_ranking_shift` does the same over many emotions for a set of embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import ConfigError
from emovid.retrieval.index import VideoIndex

MAX_QUERY_CHARS = 500
#: Ranks beyond this many videos are not computed for the "rank with / without the emotion term" of a hit.
RANK_WINDOW = 1000
MAX_QUERIES = 10_000


def read_queries(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """Queries for ``emovid search --compare --queries FILE``.

    A text file, one query per line (blank lines and ``#`` comments skipped), optionally ``QUERY | EMOTION[,...]``
    to give its emotion term; or a JSON list of strings or ``{"query": TEXT, "emotions": [NAME, ...]}`` objects.

    Raises:
        LabelFormatError: a malformed line or entry (the message names the file and line / index).
    """
    import json

    from emovid.errors import LabelFormatError
    from emovid.utils.paths import check_regular_file

    p = check_regular_file(path, "query file")
    try:
        with open(p, encoding="utf-8-sig") as f:
            text = f.read(4 * MAX_QUERY_CHARS * MAX_QUERIES)
    except UnicodeDecodeError as e:
        raise LabelFormatError("not valid UTF-8; re-save the file as UTF-8", p) from e
    out: list[tuple[str, list[str]]] = []

    def add(q, emo, where):
        if not isinstance(q, str) or not q.strip():
            raise LabelFormatError("expected a query text", p, where)
        if len(q.strip()) > MAX_QUERY_CHARS:
            raise LabelFormatError(f"query too long ({len(q.strip())} characters; at most {MAX_QUERY_CHARS})", p, where)
        try:
            out.append((q.strip(), check_emotions(emo)))
        except ConfigError as e:
            raise LabelFormatError(str(e), p, where) from e
        if len(out) > MAX_QUERIES:
            raise LabelFormatError(f"more than {MAX_QUERIES} queries", p, where)

    if str(p).lower().endswith(".json"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise LabelFormatError(f"invalid JSON ({str(e)[:80]})", p, getattr(e, "lineno", None)) from e
        if not isinstance(data, list):
            raise LabelFormatError('expected a JSON list of queries or {"query", "emotions"} objects', p)
        for i, item in enumerate(data):
            if isinstance(item, dict):
                emo = item.get("emotions", [])
                if not isinstance(emo, list) or not all(isinstance(e, str) for e in emo):
                    raise LabelFormatError("emotions: expected a list of emotion names", p, f"[{i}]")
                add(item.get("query"), emo, f"[{i}]")
            else:
                add(item, [], f"[{i}]")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            q, _, emo = line.partition("|")
            add(q, [e.strip() for e in emo.split(",") if e.strip()], n)
    if not out:
        raise LabelFormatError("no queries in the file", p)
    return out


def dominant_emotions(row: dict[str, Any], ratio: float = 0.5) -> list[str]:
    """The emotions of a metadata row with a share ≥ ``ratio`` × its largest share (none if all are zero)."""
    emo = row.get("emotions") or {}
    top = max(emo.values(), default=0.0)
    return [e for e in PLUTCHIK_EMOTIONS if top > 0 and emo.get(e, 0.0) >= ratio * top]


def check_emotions(names: Sequence[str] | None) -> list[str]:
    out = []
    for n in names or []:
        key = str(n).strip().lower()
        if key not in PLUTCHIK_EMOTIONS:
            raise ConfigError(f"unknown emotion {n!r}; choose from {', '.join(PLUTCHIK_EMOTIONS)}")
        if key not in out:
            out.append(key)
    return out


def check_query(text: str) -> str:
    t = (text or "").strip()
    if not t:
        raise ConfigError("empty query; type what the video should show or feel")
    if len(t) > MAX_QUERY_CHARS:
        raise ConfigError(f"query too long ({len(t)} characters; at most {MAX_QUERY_CHARS})")
    return t


@dataclass
class SearchResult:
    query: str
    mode: str
    emotions: list[str]
    emotion_source: str  # given | detected | none | off
    hits: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "emotions": self.emotions,
            "emotion_source": self.emotion_source,
            "results": self.hits,
        }


class Searcher:
    """An index and its query encoder."""

    def __init__(self, index: str | os.PathLike | VideoIndex, device: str = "cpu"):
        self.index = index if isinstance(index, VideoIndex) else VideoIndex.load(index)
        self.mode = self.index.mode
        self.device = device
        enc = self.index.info["encoder"]
        if self.mode == "zero-shot":
            from emovid.retrieval.text import emotion_prompt_matrix, get_query_encoder

            self._text = get_query_encoder(device)  # no torch / transformers import: `emovid search` starts fast
            self._prompts = emotion_prompt_matrix(device)
            self._weight = float(enc.get("emotion_weight", 1.0))
        elif self.mode == "model":
            from emovid.tasks.retrieval import load_text_side

            # the text half only: a query never needs the video encoder
            self._model = load_text_side(enc["checkpoint"]).to(device).eval()
        else:
            raise ConfigError(f"{self.index.root}: unknown index mode {self.mode!r}")

    def describe(self) -> str:
        enc = self.index.info["encoder"]
        if self.mode == "zero-shot":
            return (
                f"mode: zero-shot (offline; text: {enc.get('text')}; video emotions: captions or "
                f"{enc.get('video_emotions')}); {len(self.index)} videos"
            )
        return f"mode: model (checkpoint {enc.get('checkpoint')}); {len(self.index)} videos"

    def query_emotions(self, text: str, emotions: Sequence[str] | None) -> tuple[list[str], str]:
        from emovid.retrieval.text import emotions_from_text

        given = check_emotions(emotions)
        if given:
            return given, "given"
        found = emotions_from_text(text)
        return (found, "detected") if found else ([], "none")

    def encode(self, text: str, emotions: Sequence[str]) -> np.ndarray:
        """The query vector of ``text`` with the emotion term of ``emotions`` (none when empty)."""
        vec = np.zeros(8, np.float32)
        for e in emotions:
            vec[PLUTCHIK_EMOTIONS.index(e)] = 1.0
        if self.mode == "zero-shot":
            from emovid.retrieval.text import zero_shot_vector

            t = self._text.encode([text])[0]
            return zero_shot_vector(t, vec if vec.any() else None, self._prompts, self._weight)
        return self._model.encode_texts([text], vec[None] if vec.any() else None)[0]

    def search(
        self,
        text: str,
        k: int = 10,
        emotions: Sequence[str] | None = None,
        filter_emotions: Sequence[str] | None = None,
        use_emotion: bool = True,
        other_rank: bool = False,
    ) -> SearchResult:
        """Top-``k`` videos for ``text``.

        Args:
            emotions: the query's emotion term (default: emotions named in the text).
            filter_emotions: keep only videos whose dominant emotions include one of these.
            use_emotion: ``False`` drops the emotion term.
            other_rank: also give each hit ``rank_with`` and ``rank_without``: its rank (among the videos the
                filter keeps) with and without the emotion term. Ranks past :data:`RANK_WINDOW` are ``None``.
        """
        text = check_query(text)
        if not 1 <= int(k) <= 1000:
            raise ConfigError(f"k must be between 1 and 1000, got {k}")
        emo, source = self.query_emotions(text, emotions)
        if not use_emotion:
            emo, source = [], "off"
        flt = set(check_emotions(filter_emotions))
        keep = (lambda row: bool(flt & set(dominant_emotions(row)))) if flt else None
        q = self.encode(text, emo)
        scores, ids = self.index.search(q[None], int(k), keep)
        hits = []
        for rank, (s, i) in enumerate(zip(scores[0], ids[0], strict=True), 1):
            if i < 0:
                break
            row = self.index.meta[int(i)]
            hits.append(
                {
                    "rank": rank,
                    "id": int(i),
                    "score": round(float(s), 5),
                    "video_id": row.get("video_id"),
                    "path": row["path"],
                    "caption": row.get("caption", ""),
                    "duration": row.get("duration"),
                    "emotions": row.get("emotions", {}),
                    "dominant": dominant_emotions(row),
                    "emotion_source": row.get("emotion_source"),
                }
            )
        if other_rank:
            # the other ranking: without the term when it is on; with it when it was switched off
            off_terms = self.query_emotions(text, emotions)[0] if not use_emotion else []
            if emo or off_terms:
                other = self._window_ranks(self.encode(text, [] if emo else off_terms), keep)
                for h in hits:
                    h["rank_with"], h["rank_without"] = (
                        (h["rank"], other.get(h["id"])) if emo else (other.get(h["id"]), h["rank"])
                    )
            else:  # no emotion term either way: one ranking
                for h in hits:
                    h["rank_with"] = h["rank_without"] = h["rank"]
        return SearchResult(text, self.mode, emo, source, hits)

    def _window_ranks(self, q: np.ndarray, keep=None) -> dict[int, int]:
        """``{video id: rank}`` of the first :data:`RANK_WINDOW` videos for query vector ``q``."""
        scores, ids = self.index.search(q[None], min(RANK_WINDOW, len(self.index)), keep)
        return {int(i): r for r, i in enumerate(ids[0], 1) if i >= 0}

    def compare_queries(self, queries: Sequence[tuple[str, Sequence[str]]], k: int = 10) -> list[dict[str, Any]]:
        """For each ``(query, emotions)``: how the emotion term ranks the videos carrying those emotions.

        The relevant videos of a query are those whose dominant emotions (:func:`dominant_emotions`) include one
        of its emotions (given, else named by its words). Each row: ``query``, ``emotions``, ``videos_with_emotion``,
        ``p_at_k_with_term`` / ``p_at_k_without_term`` (share of the top ``k`` that are relevant),
        ``mean_rank_with_term`` / ``mean_rank_without_term`` (mean rank of the relevant videos over the whole
        index, 1 = first) and ``mean_rank_change`` = without - with (> 0: the term moved them up).

        Raises:
            ConfigError: a query names no emotion and gives none.
        """
        vecs = np.asarray(self.index.vectors())
        labels = [set(dominant_emotions(m)) for m in self.index.meta]
        rows = []
        for text, given in queries:
            text = check_query(text)
            emo, source = self.query_emotions(text, given)
            if not emo:
                raise ConfigError(
                    f"the query {text!r} names no emotion; add one after a '|' ({', '.join(PLUTCHIK_EMOTIONS)})"
                )
            rank_with = _ranks(vecs @ self.encode(text, emo))
            rank_without = _ranks(vecs @ self.encode(text, []))
            rel = np.array([bool(lab & set(emo)) for lab in labels])
            mw = float(rank_with[rel].mean()) if rel.any() else None
            mo = float(rank_without[rel].mean()) if rel.any() else None
            rows.append(
                {
                    "query": text,
                    "emotions": emo,
                    "emotion_source": source,
                    "videos_with_emotion": int(rel.sum()),
                    "p_at_k_with_term": _precision(rank_with, rel, k),
                    "p_at_k_without_term": _precision(rank_without, rel, k),
                    "mean_rank_with_term": mw,
                    "mean_rank_without_term": mo,
                    "mean_rank_change": None if mw is None else mo - mw,
                    "k": k,
                }
            )
        return rows

    def compare(self, text: str, k: int = 10, emotions: Sequence[str] | None = None) -> dict[str, Any]:
        """The ranking of ``text`` with and without its emotion term, over the whole index.

        Returns:
            ``emotions`` used, ``with`` / ``without`` top-``k`` lists, ``moves`` (videos whose rank changed, with
            both ranks), and per query emotion: precision@k and mean rank of the videos showing it, both ways.
        """
        text = check_query(text)
        emo, source = self.query_emotions(text, emotions)
        if not emo:
            raise ConfigError(
                f"the query {text!r} names no emotion; pass --emotion NAME ({', '.join(PLUTCHIK_EMOTIONS)})"
            )
        n = len(self.index)
        q_with, q_without = self.encode(text, emo), self.encode(text, [])
        vecs = np.asarray(self.index.vectors())
        rank_with = _ranks(vecs @ q_with)
        rank_without = _ranks(vecs @ q_without)
        labels = [dominant_emotions(m) for m in self.index.meta]
        summary = {}
        for e in emo:
            rel = np.array([e in lab for lab in labels])
            summary[e] = {
                "videos": int(rel.sum()),
                "precision_at_k_with": _precision(rank_with, rel, k),
                "precision_at_k_without": _precision(rank_without, rel, k),
                "mean_rank_with": float(rank_with[rel].mean()) if rel.any() else None,
                "mean_rank_without": float(rank_without[rel].mean()) if rel.any() else None,
            }
        top = sorted(range(n), key=lambda i: (min(rank_with[i], rank_without[i]), i))[: 2 * k]
        moves = [
            {
                "id": i,
                "video_id": self.index.meta[i].get("video_id"),
                "rank_with": int(rank_with[i]),
                "rank_without": int(rank_without[i]),
                "change": int(rank_without[i] - rank_with[i]),
                "dominant": labels[i],
            }
            for i in top
            if rank_with[i] != rank_without[i]
        ]

        def listing(r):
            order = np.argsort(r, kind="stable")[:k]
            return [{"rank": int(r[i]), "id": int(i), "video_id": self.index.meta[i].get("video_id")} for i in order]

        return {
            "query": text,
            "mode": self.mode,
            "emotions": emo,
            "emotion_source": source,
            "k": k,
            "with": listing(rank_with),
            "without": listing(rank_without),
            "moves": moves,
            "summary": summary,
        }


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def _precision(ranks: np.ndarray, relevant: np.ndarray, k: int) -> float:
    top = ranks <= k
    return float((top & relevant).sum() / max(1, min(k, len(ranks))))


def emotion_ranking_shift(
    encode: Callable[[str, np.ndarray | None], np.ndarray],
    gallery: np.ndarray,
    labels: np.ndarray,
    text: str,
    k: int = 10,
    emotions: Sequence[str] = PLUTCHIK_EMOTIONS,
) -> dict[str, dict[str, float]]:
    """For each emotion with labelled videos: a query ``text`` with that emotion term vs without.

    Args:
        encode: ``(text, emotion_vector [8] or None) -> [D]`` unit query vector.
        gallery: ``[N, D]`` unit video vectors.
        labels: ``[N, 8]`` 0/1: which emotions each video shows.
        text: the query text (best one that names no emotion, so the term alone moves the ranking).

    Returns:
        ``{emotion: {precision_at_k_with, precision_at_k_without, mean_rank_with, mean_rank_without, videos}}``.
    """
    base = _ranks(gallery @ encode(text, None))
    out = {}
    for e in emotions:
        j = PLUTCHIK_EMOTIONS.index(e)
        rel = labels[:, j] > 0
        if not rel.any():
            continue
        vec = np.zeros(8, np.float32)
        vec[j] = 1
        r = _ranks(gallery @ encode(text, vec))
        out[e] = {
            "videos": int(rel.sum()),
            "precision_at_k_with": _precision(r, rel, k),
            "precision_at_k_without": _precision(base, rel, k),
            "mean_rank_with": float(r[rel].mean()),
            "mean_rank_without": float(base[rel].mean()),
        }
    return out
