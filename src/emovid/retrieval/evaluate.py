"""``emovid eval retrieval``: a trained checkpoint's retrieval metrics and its emotion ranking shift."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from emovid.errors import ConfigError


def embed_records(model, records: list, loader, batch_size: int = 16, both: bool = False):
    """Unit video embeddings ``[N, D]`` of the records' videos (one clip each, as in validation).

    ``both=True`` returns ``(with, without)`` the video-emotion term (the same array twice for models without one).
    """
    import torch

    dev = next(model.parameters()).device
    out, out0 = [], []
    video_term = getattr(model.head, "video_emotion", "none") != "none"
    for i in range(0, len(records), batch_size):
        clips = torch.stack([loader(r)[0] for r in records[i : i + batch_size]]).to(dev)
        with torch.inference_mode():
            f = model.features(clips)
            out.append(model.head(f).float().cpu().numpy())
            if video_term:
                out0.append(model.head(f, use_emotion=False).float().cpu().numpy())
    video = np.concatenate(out)
    if not both:
        return video
    return video, (np.concatenate(out0) if video_term else video)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None = None,
    video_root: str | os.PathLike | None = None,
    query: str = "a person",
    k: int = 10,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``data`` (all its captions) or, by default, on its own validation split.

    Returns:
        ``metrics`` (t2v/v2t R@1/5/10, medr, meanr, ties ranked pessimistically by
        :func:`~emovid.tasks.retrieval.retrieval_ranks`; ``*_noemo`` without the emotion term), ``emotion_shift``
        (:func:`~emovid.retrieval.search.emotion_ranking_shift` of ``query`` over the evaluated videos) and counts.
    """
    from emovid.data.datasets import ClipLoader
    from emovid.engine.model_dir import load_model_dir
    from emovid.models import create_transform
    from emovid.retrieval.search import emotion_ranking_shift
    from emovid.tasks.retrieval import retrieval_metrics
    from emovid.video.sampling import parse_sampler

    model, cfg, task = load_model_dir(checkpoint)
    if cfg.task != "retrieval":
        raise ConfigError(f"{checkpoint}: a {cfg.task!r} checkpoint, not a retrieval one")
    if data is not None:
        task.cfg.data, task.cfg.video_root, task.cfg.val_fraction = str(data), video_root, 0.0
        task.load()
        records = task.train_records + task.val_records
        split = f"all of {data}"
    else:
        task.load()
        records = task.val_records
        split = f"validation split of {cfg.data}"
    if not records:
        raise ConfigError(f"{checkpoint}: no captions to evaluate ({split})")
    pc = model.feature_extractor.pretrained_cfg
    sampler = parse_sampler(cfg.eval_sampler or f"center:{pc.num_frames}x{pc.frame_stride}")
    loader = ClipLoader(sampler, create_transform(pc, train=False), pc.short_side or min(pc.input_size))
    video, video_noemo = embed_records(model, records, loader, batch_size, both=True)
    texts = [r.caption for r in records]
    emo = np.array([[float(x > 0) for x in (r.plutchik or (0,) * 8)] for r in records], np.float32)
    t_with = model.encode_texts(texts, emo)
    t_without = model.encode_texts(texts, None)
    ids = [str(r.video_id) for r in records]
    metrics = retrieval_metrics(t_with, video, ids)
    metrics.update(retrieval_metrics(t_without, video_noemo, ids, suffix="_noemo"))
    first = {v: i for i, v in reversed(list(enumerate(ids)))}
    rows = sorted(first.values())
    shift = emotion_ranking_shift(
        lambda text, e: model.encode_texts([text], None if e is None else e[None])[0],
        video[rows],
        emo[rows],
        query,
        k=k,
    )
    return {
        "checkpoint": str(Path(checkpoint)),
        "split": split,
        "captions": len(records),
        "videos": len(rows),
        "chance_r1": 1.0 / len(rows),
        "emotion_mode": model.head.text.emotion_mode,
        "video_emotion": model.head.video_emotion,
        "metrics": metrics,
        "emotion_shift_query": query,
        "emotion_shift": shift,
    }
