"""The original t-SNE TODO: video and text embeddings in 2-D, coloured by emotion (scikit-learn + PNG).

* :func:`plot_index_tsne` — one index's videos (and captions, queries);
* :func:`plot_checkpoints_tsne` — two (or more) trained checkpoints side by side, e.g. before and after an
  architecture change: the same videos and captions embedded by each, one t-SNE panel per checkpoint.
"""

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
    plot_panels([(points, labels, kinds, title or "t-SNE of video and text embeddings")], output)


def plot_panels(panels: Sequence[tuple[np.ndarray, Sequence[str], Sequence[str], str]], output) -> None:
    """One scatter per ``(points, labels, kinds, title)``, side by side, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emovid.utils.io import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 7), dpi=110, squeeze=False)
    for ax, (points, labels, kinds, title) in zip(axes[0], panels, strict=True):
        _scatter(ax, points, labels, kinds, title)
    fig.tight_layout()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _scatter(ax, points, labels, kinds, title: str) -> None:
    markers = {"video": "o", "text": "^", "query": "*"}
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
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", ncol=2, markerscale=0.8)


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


def video_emotion_label(plutchik_rows: Sequence[Sequence[float]]) -> str:
    """The strongest Plutchik emotion of a video's summed caption counts, ``none`` when all are zero."""
    total = np.sum(np.asarray(plutchik_rows, np.float64).reshape(-1, len(PLUTCHIK_EMOTIONS)), axis=0)
    return PLUTCHIK_EMOTIONS[int(np.argmax(total))] if total.max() > 0 else "none"


def plot_checkpoints_tsne(
    checkpoints: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    data: str | os.PathLike | None = None,
    video_root: str | os.PathLike | None = None,
    captions: bool = True,
    perplexity: float = 30.0,
    seed: int = 0,
    max_videos: int = 2000,
    batch_size: int = 16,
) -> dict[str, Any]:
    """t-SNE panels of trained retrieval checkpoints, side by side, over the same videos and captions.

    The videos are those of ``data`` (all its captions), else the first checkpoint's validation split. Each
    checkpoint embeds them (its own clip sampling) and their captions with their emotion vectors; points are
    coloured by the video's strongest caption emotion (:func:`video_emotion_label`).

    Raises:
        ConfigError: a checkpoint is not a retrieval one, or there are fewer than 3 videos.
    """
    from emovid.data.datasets import ClipLoader
    from emovid.engine.model_dir import load_model_dir
    from emovid.models import create_transform
    from emovid.retrieval.evaluate import embed_records
    from emovid.video.sampling import parse_sampler

    if not checkpoints:
        raise ConfigError("give at least one --checkpoint")
    records = None
    panels = []
    for ck in checkpoints:
        model, cfg, task = load_model_dir(ck)
        if cfg.task != "retrieval":
            raise ConfigError(f"{ck}: a {cfg.task!r} checkpoint, not a retrieval one")
        if records is None:
            if data is not None:
                task.cfg.data, task.cfg.video_root, task.cfg.val_fraction = str(data), video_root, 0.0
                task.load()
                records = task.train_records + task.val_records
            else:
                task.load()
                records = task.val_records
            first: dict[str, int] = {}
            for i, r in enumerate(records):
                first.setdefault(str(r.video_id), i)
            videos = [records[i] for i in list(first.values())[:max_videos]]
            keep = {str(r.video_id) for r in videos}
            caps = [r for r in records if str(r.video_id) in keep] if captions else []
            by_video: dict[str, list] = {}
            for r in records:
                by_video.setdefault(str(r.video_id), []).append(r.plutchik or (0.0,) * 8)
            vlabels = [video_emotion_label(by_video[str(r.video_id)]) for r in videos]
            label_of = dict(zip((str(r.video_id) for r in videos), vlabels, strict=True))
            if len(videos) < 3:
                raise ConfigError(f"t-SNE needs at least 3 videos, found {len(videos)}")
        pc = model.feature_extractor.pretrained_cfg
        sampler = parse_sampler(cfg.eval_sampler or f"center:{pc.num_frames}x{pc.frame_stride}")
        loader = ClipLoader(sampler, create_transform(pc, train=False), pc.short_side or min(pc.input_size))
        vecs = [embed_records(model, videos, loader, batch_size)]
        labels, kinds = list(vlabels), ["video"] * len(videos)
        if caps:
            emo = np.array([[float(x > 0) for x in (r.plutchik or (0,) * 8)] for r in caps], np.float32)
            vecs.append(model.encode_texts([r.caption for r in caps], emo))
            labels += [label_of[str(r.video_id)] for r in caps]
            kinds += ["text"] * len(caps)
        pts = tsne_2d(np.concatenate(vecs).astype(np.float32), perplexity, seed)
        text_mode = model.head.text.emotion_mode
        video_mode = getattr(model.head, "video_emotion", "none")
        title = f"{Path(ck).name}: emotion={text_mode}" + (
            f", video_emotion={video_mode}" if video_mode != "none" else ""
        )
        panels.append((pts, labels, kinds, title))
    plot_panels(panels, output)
    return {
        "output": str(output),
        "checkpoints": [str(c) for c in checkpoints],
        "videos": len(videos),
        "texts": len(caps),
        "panels": [p[3] for p in panels],
    }
