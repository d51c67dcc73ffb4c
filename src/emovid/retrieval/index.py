"""A FAISS vector index of videos with a metadata table, built in resumable steps.

Layout of an index folder::

    index.json      what the index is: dim, kind (flat | ivf | hnsw) and its parameters, mode (zero-shot |
                    model) and encoder, the video roots it may serve files from, the number of vectors
    vectors.f32     every L2-normalised vector, row-major float32 (the source of truth; FAISS is rebuilt from it)
    meta.jsonl      one JSON object per vector, same order (path, video_id, duration, caption, emotions, ...)
    index.faiss     the FAISS index over vectors.f32 (written atomically by :meth:`VideoIndex.finalize`)

Building appends a batch of vectors, then its metadata lines; an interrupted build is resumed by reopening the
folder: rows of ``vectors.f32`` beyond the metadata lines are cut off, and videos already listed are skipped.

Kinds (inner product on unit vectors = cosine similarity):

* ``flat`` (default): ``IndexFlatIP``, exact;
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` k-means cells (default ``4 sqrt(n)``), ``nprobe`` cells searched;
* ``hnsw``: ``IndexHNSWFlat`` graph with ``M`` links, ``efConstruction`` and ``efSearch``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emovid.errors import ConfigError, EmovidError, InputNotFoundError
from emovid.utils.io import atomic_path, write_json

INFO_FILE = "index.json"
VECTORS_FILE = "vectors.f32"
META_FILE = "meta.jsonl"
FAISS_FILE = "index.faiss"
KINDS = ("flat", "ivf", "hnsw")
FORMAT_VERSION = 1


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise EmovidError("the video index needs FAISS: pip install faiss-cpu (or 'emovid[retrieval]')") from e
    return faiss


@dataclass
class IndexSpec:
    """Which FAISS index to build and how to search it."""

    kind: str = "flat"
    nlist: int | None = None  # ivf: cells (default 4 sqrt(n), at least 1, at most n / 39)
    nprobe: int = 32  # ivf: cells searched per query
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r}; choose one of {', '.join(KINDS)}")


def make_faiss_index(dim: int, spec: IndexSpec, train: np.ndarray | None = None):
    """An empty (trained, for IVF) FAISS index for unit vectors of ``dim`` under inner product."""
    faiss = _faiss()
    if spec.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        return index
    n = 0 if train is None else len(train)
    nlist = spec.nlist or max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    if n < nlist:
        raise ConfigError(f"ivf index: {n} vectors cannot train {nlist} cells; use --kind flat for small collections")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    index.nprobe = min(spec.nprobe, nlist)
    return index


def set_search_params(index, spec: IndexSpec) -> None:
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
    if ivf is not None:
        ivf.nprobe = min(spec.nprobe, ivf.nlist)
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = spec.ef_search


@dataclass
class VideoIndex:
    """An index folder in memory: info, metadata rows, vectors (memory-mapped) and the FAISS index."""

    root: Path
    info: dict[str, Any]
    meta: list[dict[str, Any]] = field(default_factory=list)
    index: Any = None

    # ---- creation and resumable appends ------------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: str | os.PathLike, dim: int, spec: IndexSpec, mode: str, encoder: dict, roots: list[str]
    ) -> VideoIndex:
        """A new empty index folder (an existing one of the same dim/mode is reopened instead, to resume)."""
        root = Path(root)
        if (root / INFO_FILE).exists():
            old = cls.open(root)
            if old.info["dim"] != dim or old.info["mode"] != mode:
                raise ConfigError(
                    f"{root}: holds a {old.info['mode']} index of dim {old.info['dim']}; this build makes a {mode} "
                    f"index of dim {dim}. Choose another --output or delete the folder"
                )
            old.info["roots"] = sorted(set(old.info["roots"]) | set(roots))
            old._write_info()
            return old
        root.mkdir(parents=True, exist_ok=True)
        info = {
            "format": FORMAT_VERSION,
            "dim": int(dim),
            "mode": mode,
            "encoder": encoder,
            "spec": asdict(spec),
            "roots": sorted({str(Path(r).resolve()) for r in roots}),
            "count": 0,
        }
        (root / VECTORS_FILE).touch()
        (root / META_FILE).touch()
        idx = cls(root, info)
        idx._write_info()
        return idx

    @classmethod
    def open(cls, root: str | os.PathLike) -> VideoIndex:
        """Reopen a folder for appending: metadata read, stray vector rows of an interrupted batch cut off."""
        root = Path(root)
        if not (root / INFO_FILE).exists():
            raise InputNotFoundError(
                f"not an emovid video index (no {INFO_FILE}); build one with emovid index build", root
            )
        try:
            info = json.loads((root / INFO_FILE).read_text())
        except ValueError as e:
            raise EmovidError(f"unreadable {INFO_FILE} ({e})", root / INFO_FILE) from e
        meta = _read_meta(root / META_FILE)
        row = info["dim"] * 4
        vec = root / VECTORS_FILE
        size = vec.stat().st_size if vec.exists() else 0
        if size < len(meta) * row:
            raise EmovidError(
                f"{vec} has fewer vectors than {META_FILE} has rows; the index is damaged, rebuild it", root
            )
        if size > len(meta) * row:
            with open(vec, "r+b") as f:
                f.truncate(len(meta) * row)
        return cls(root, info, meta)

    def done(self) -> set[str]:
        """Paths already in the index (skipped when a build is resumed or videos are added)."""
        return {m["path"] for m in self.meta}

    def append(self, vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        """Append a batch: vectors first (flushed to disk), then their metadata lines (the commit)."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.info["dim"] or len(v) != len(rows):
            raise ValueError(f"expected [{len(rows)}, {self.info['dim']}] vectors, got {tuple(v.shape)}")
        with open(self.root / VECTORS_FILE, "ab") as f:
            f.write(v.tobytes())
            f.flush()
            os.fsync(f.fileno())
        with open(self.root / META_FILE, "a", encoding="utf-8") as f:
            for r in rows:
                r = {"id": len(self.meta), **r}
                f.write(json.dumps(r) + "\n")
                self.meta.append(r)
            f.flush()
            os.fsync(f.fileno())

    def vectors(self) -> np.ndarray:
        """All vectors ``[n, dim]`` (memory-mapped, read-only)."""
        n, d = len(self.meta), self.info["dim"]
        if n == 0:
            return np.zeros((0, d), np.float32)
        return np.memmap(self.root / VECTORS_FILE, dtype=np.float32, mode="r", shape=(n, d))

    def finalize(self, spec: IndexSpec | None = None) -> None:
        """Bring ``index.faiss`` up to date with the vectors: add the new rows, or build it anew."""
        faiss = _faiss()
        spec = spec or IndexSpec(**self.info["spec"])
        vecs = self.vectors()
        path = self.root / FAISS_FILE
        index = None
        if path.exists() and spec == IndexSpec(**self.info["spec"]):
            index = faiss.read_index(str(path))
            if index.ntotal > len(vecs) or index.d != self.info["dim"]:
                index = None
        if index is None:
            if not len(vecs):
                raise EmovidError("no videos were embedded; nothing to index", self.root)
            train = None
            if spec.kind == "ivf":
                rng = np.random.default_rng(0)
                take = rng.choice(len(vecs), size=min(len(vecs), 256 * (spec.nlist or 1024)), replace=False)
                train = np.asarray(vecs[np.sort(take)])
            index = make_faiss_index(self.info["dim"], spec, train)
        for start in range(index.ntotal, len(vecs), 65536):
            index.add(np.ascontiguousarray(vecs[start : start + 65536]))
        set_search_params(index, spec)
        with atomic_path(path) as tmp:
            faiss.write_index(index, str(tmp))
        self.index = index
        self.info["spec"] = asdict(spec)
        self.info["count"] = int(index.ntotal)
        self._write_info()

    def _write_info(self) -> None:
        write_json(self.root / INFO_FILE, self.info)

    # ---- loading and searching ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, root: str | os.PathLike) -> VideoIndex:
        """Open a finished index for searching.

        Raises:
            InputNotFoundError: not an index folder.
            EmovidError: the build did not finish (run the same ``emovid index build`` again to complete it).
        """
        faiss = _faiss()
        idx = cls.open(root)
        path = idx.root / FAISS_FILE
        if not path.exists():
            raise EmovidError(f"the index build did not finish (no {FAISS_FILE}); rerun emovid index build", idx.root)
        idx.index = faiss.read_index(str(path))
        if idx.index.ntotal != len(idx.meta):
            raise EmovidError(
                f"{FAISS_FILE} holds {idx.index.ntotal} vectors but {META_FILE} {len(idx.meta)} videos; rerun "
                "emovid index build (or add) to finish",
                idx.root,
            )
        set_search_params(idx.index, IndexSpec(**idx.info["spec"]))
        return idx

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def mode(self) -> str:
        return self.info["mode"]

    def search(
        self, queries: np.ndarray, k: int = 10, keep: Callable[[dict], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` ``[Q, k]`` (id -1 / score -inf where fewer match).

        ``keep(meta_row)`` filters videos (e.g. by emotion); the search widens until ``k`` pass or all were seen.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = len(self.meta)
        if keep is None:
            scores, ids = self.index.search(q, min(k, n))
            return _pad(scores, ids, k)
        allowed = np.array([bool(keep(m)) for m in self.meta])
        out_s, out_i = np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        for row in range(len(q)):
            want = min(n, max(4 * k, 64))
            while True:
                s, i = self.index.search(q[row : row + 1], want)
                ok = [(a, b) for a, b in zip(s[0], i[0], strict=True) if b >= 0 and allowed[b]]
                if len(ok) >= k or want >= n:
                    break
                want = min(n, want * 4)
            for j, (a, b) in enumerate(ok[:k]):
                out_s[row, j], out_i[row, j] = a, b
        return out_s, out_i

    def resolve_path(self, vid: int) -> Path:
        """The file of video ``vid`` if it lies inside one of the index roots (symlinks resolved).

        Raises:
            PermissionError: the file is outside every root.
        """
        p = Path(self.meta[vid]["path"]).resolve()
        for r in self.info["roots"]:
            rp = Path(r).resolve()
            if p == rp or rp in p.parents:
                return p
        raise PermissionError(f"{p} is outside the indexed roots")


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] >= k:
        return scores, ids
    pad = k - scores.shape[1]
    scores = np.concatenate([scores, np.full((len(scores), pad), -np.inf, np.float32)], 1)
    return scores, np.concatenate([ids, np.full((len(ids), pad), -1, np.int64)], 1)


def _read_meta(path: Path) -> list[dict[str, Any]]:
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):  # a line cut by an interruption: its batch is not committed
                break
            rows.append(json.loads(line))
    if rows and path.stat().st_size != sum(len(json.dumps(r)) + 1 for r in rows):
        # drop a partial last line so later appends start on a clean line
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return rows
