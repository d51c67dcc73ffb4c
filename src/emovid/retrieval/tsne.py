"""The seed's t-SNE TODO: video and text embeddings of an index in 2-D, coloured by emotion (scikit-learn + PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import ConfigError

COLOURS = {
    "joy": "#f2b705",
    "trust": "#5cb85c",
    "surprise": "#17a2b8",
    "anticipation": "#fd7e14",
    "fear": "#6f42c1",
    "sadness": "#1f4e9c",
    "disgust": "#6b8e23",
    "anger": "#d62728",
    "none": "#9a9a9a",
}


def tsne_2d(x: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``[N, D]`` → ``[N, 2]`` with scikit-learn's TSNE (cosine metric; perplexity capped below N)."""
    from sklearn.manifold import TSNE

    if len(x) < 3:
        raise ConfigError(f"t-SNE needs at least 3 points, got {len(x)}")
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, metric="cosine", init="pca", random_state=seed).fit_transform(x)


def plot_embeddings(
    points: np.ndarray, labels: Sequence[str], kinds: Sequence[str], output: str | os.PathLike, title: str = ""
) -> None:
    """Scatter 2-D ``points``: colour by emotion label, marker by kind (``video`` o, ``text`` ^, ``query`` *)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emovid.utils.io import atomic_path

    markers = {"video": "o", "text": "^", "query": "*"}
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    labels, kinds = np.asarray(labels), np.asarray(kinds)
    for kind, m in markers.items():
        for lab in [*PLUTCHIK_EMOTIONS, "none"]:
            sel = (kinds == kind) & (labels == lab)
            if sel.any():
                ax.scatter(
                    points[sel, 0],
                    points[sel, 1],
                    c=COLOURS[lab],
                    marker=m,
                    s=140 if kind == "query" else 28,
                    alpha=0.85,
                    edgecolors="k" if kind != "video" else "none",
                    linewidths=0.5,
                    label=f"{kind}: {lab}",
                )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of video and text embeddings")
    ax.legend(fontsize=7, loc="best", ncol=2, markerscale=0.8)
    fig.tight_layout()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_index_tsne(
    index: str | os.PathLike,
    output: str | os.PathLike,
    queries: Sequence[str] = (),
    captions: bool = True,
    perplexity: float = 30.0,
    seed: int = 0,
    max_videos: int = 5000,
) -> dict[str, Any]:
    """t-SNE of an index's video vectors (+ its captions and ``queries`` through the index's text encoder).

    Videos are coloured by their strongest emotion; captions by the emotion of their video (they are embedded with
    the video's emotion term, as in training); queries by the emotions their words name.
    """
    from emovid.retrieval.search import Searcher, dominant_emotions

    s = Searcher(index)
    meta = s.index.meta[:max_videos]
    vecs = [np.asarray(s.index.vectors()[: len(meta)])]
    labels = [(dominant_emotions(m) or ["none"])[0] for m in meta]
    kinds = ["video"] * len(meta)
    if captions:
        for m, lab in zip(meta, list(labels), strict=True):
            if m.get("caption"):
                vecs.append(s.encode(m["caption"], [] if lab == "none" else [lab])[None])
                labels.append(lab)
                kinds.append("text")
    for q in queries:
        emo, _ = s.query_emotions(q, None)
        vecs.append(s.encode(q, emo)[None])
        labels.append(emo[0] if emo else "none")
        kinds.append("query")
    x = np.concatenate(vecs).astype(np.float32)
    pts = tsne_2d(x, perplexity, seed)
    plot_embeddings(pts, labels, kinds, output, f"t-SNE ({s.mode}): {len(meta)} videos, {kinds.count('text')} captions")
    return {"output": str(output), "videos": len(meta), "texts": kinds.count("text"), "queries": len(queries)}
