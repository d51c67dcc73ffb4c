"""Emotions of one face over time: temporal smoothing and segments of the same dominant emotion.

Both work on one track's samples (the times at which that face was found and its probabilities there), so faces
never mix: :func:`smooth_probs` averages each sample's probabilities over a centred time window, and
:func:`emotion_segments` cuts the track into runs of one dominant emotion, folding runs shorter than a minimum into
their neighbours (a 0.2 s flicker of "fear" between "sad" and "happy" is not a segment of its own).

>>> import numpy as np
>>> t = np.arange(10) * 0.5
>>> p = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]] * 5)
>>> [(s["emotion"], s["start"], s["end"]) for s in emotion_segments(t, p, ["sad", "happy"], step=0.5)]
[('sad', 0.0, 2.5), ('happy', 2.5, 5.0)]
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

__all__ = ["emotion_segments", "smooth_probs", "track_samples"]


def smooth_probs(t: Sequence[float] | np.ndarray, probs: np.ndarray, seconds: float) -> np.ndarray:
    """Each sample's probabilities averaged over the samples within ``seconds / 2`` of it (a centred window).

    The window is in time, not in samples: samples missing where the face was not found do not stretch it, and a
    face seen at a lower rate is smoothed over the same span. Rows that sum to 1 still do.

    Args:
        t: sample times in seconds ``[N]``, non-decreasing.
        probs: probabilities ``[N, K]``.
        seconds: window width; ``0`` (or a single sample) returns a copy.

    Returns:
        the smoothed probabilities ``[N, K]`` (float64).
    """
    tt = np.asarray(t, np.float64)
    p = np.asarray(probs, np.float64)
    if seconds <= 0 or len(tt) < 2:
        return p.copy()
    half = seconds / 2 + 1e-9  # samples exactly half a window away are inside it
    lo = np.searchsorted(tt, tt - half, side="left")
    hi = np.searchsorted(tt, tt + half, side="right")
    cs = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    return (cs[hi] - cs[lo]) / (hi - lo)[:, None]


def emotion_segments(
    t: Sequence[float] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    min_s: float = 1.0,
    step: float | None = None,
    end: float | None = None,
    max_gap: float | None = None,
) -> list[dict]:
    """Runs of the same dominant emotion (argmax) in one face's samples, short runs merged into neighbours.

    Sample ``i`` covers ``[t[i], t[i + 1])``; the last one, and one followed by a gap longer than ``max_gap`` (the
    face was lost), covers ``step`` seconds (clipped at ``end``). A gap splits the track: segments never bridge it.
    Then, shortest first, every run shorter than ``min_s`` joins the neighbour (within its part of the track)
    whose emotion it holds more probability of; runs of the same emotion that meet become one. A part of the track
    that is shorter than ``min_s`` as a whole stays one segment.

    Args:
        t: sample times in seconds ``[N]``, non-decreasing.
        probs: probabilities ``[N, K]`` (smoothed or not), columns in the order of ``labels``.
        labels: the emotion names.
        min_s: shortest segment kept on its own, in seconds (``0``: every run is a segment).
        step: time between samples (the analysis rate's period); default the median spacing of ``t`` (0 for one
            sample).
        end: where the input ends (a video's duration); segments do not run past it (or past the last sample).
        max_gap: longest spacing still treated as continuous; default ``max(3 * step, 1.0)``.

    Returns:
        ``[{"emotion", "start", "end"}]`` in time order, times in seconds rounded to 3 decimals.
    """
    tt = np.asarray(t, np.float64)
    p = np.asarray(probs, np.float64)
    n = len(tt)
    if n == 0:
        return []
    if step is None:
        step = float(np.median(np.diff(tt))) if n > 1 else 0.0
    if max_gap is None:
        max_gap = max(3 * step, 1.0)
    dt = np.diff(tt)
    broken = dt > max_gap + 1e-9  # the face was lost between sample i and i + 1
    stop = np.empty(n)
    stop[:-1] = np.where(broken, tt[:-1] + step, tt[1:])
    stop[-1] = tt[-1] + step
    if end is not None:
        stop = np.minimum(stop, max(float(end), float(tt[-1])))
    stop = np.maximum(stop, tt)
    top = np.argmax(p, axis=1)
    cs = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])

    # Runs as a doubly linked list: [emotion, first sample, last sample + 1]; links never cross a gap.
    runs: list[list[int]] = []
    prev: list[int | None] = []
    nxt: list[int | None] = []
    for i in range(n):
        cont = i > 0 and not broken[i - 1]
        if cont and top[i] == runs[-1][0]:
            runs[-1][2] = i + 1
            continue
        runs.append([int(top[i]), i, i + 1])
        prev.append(len(runs) - 2 if cont else None)
        nxt.append(None)
        if cont:
            nxt[-2] = len(runs) - 1
    alive = [True] * len(runs)
    version = [0] * len(runs)

    def span(r: int) -> float:
        return float(stop[runs[r][2] - 1] - tt[runs[r][1]])

    def absorb(into: int, r: int) -> None:
        """Run ``into`` takes over its neighbour ``r`` (and ``r``'s links on the far side)."""
        runs[into][1] = min(runs[into][1], runs[r][1])
        runs[into][2] = max(runs[into][2], runs[r][2])
        if prev[r] == into:
            nxt[into] = nxt[r]
            if nxt[r] is not None:
                prev[nxt[r]] = into
        else:
            prev[into] = prev[r]
            if prev[r] is not None:
                nxt[prev[r]] = into
        alive[r] = False

    def held(r: int, x: int | None) -> float:
        """How much probability run ``r``'s samples give to the emotion of run ``x`` (-1 without ``x``)."""
        if x is None:
            return -1.0
        emo = runs[x][0]
        return float(cs[runs[r][2], emo] - cs[runs[r][1], emo])

    heap = [(span(r), r, 0) for r in range(len(runs))]
    heapq.heapify(heap)
    while heap:
        length, r, ver = heapq.heappop(heap)
        if not alive[r] or ver != version[r]:
            continue
        if length >= min_s - 1e-9:
            break  # the shortest run left is long enough
        a, b = prev[r], nxt[r]
        if a is None and b is None:
            continue  # all there is of this part of the track
        if a is not None and b is not None and runs[a][0] == runs[b][0]:
            absorb(a, r)
            absorb(a, b)
            into = a
        else:
            into = a if held(r, a) >= held(r, b) else b
            assert into is not None
            absorb(into, r)
        version[into] += 1
        heapq.heappush(heap, (span(into), into, version[into]))

    out = []
    for r in sorted((r for r in range(len(runs)) if alive[r]), key=lambda r: runs[r][1]):
        emo, i0, i1 = runs[r]
        out.append({"emotion": labels[emo], "start": round(float(tt[i0]), 3), "end": round(float(stop[i1 - 1]), 3)})
    return out


def track_samples(frames: Sequence[dict], labels: Sequence[str], key: str = "emotions") -> dict[int, tuple]:
    """Per track id, in order of first appearance: ``(times [N], probabilities [N, K], faces [N])`` of a result.

    ``frames`` is a result's ``frames`` list (:func:`emovid.analyze.analyze_file`); ``faces`` are its face dicts
    (to write per-face values back); ``key`` picks ``emotions`` or ``emotions_smoothed``.
    """
    acc: dict[int, tuple[list, list, list]] = {}
    for fr in frames:
        for face in fr["faces"]:
            emo = face.get(key)
            if not emo or "track" not in face:
                continue
            ts, ps, fs = acc.setdefault(int(face["track"]), ([], [], []))
            ts.append(float(fr["t"]))
            ps.append([float(emo.get(lab, 0.0)) for lab in labels])
            fs.append(face)
    return {
        tid: (np.asarray(ts, np.float64), np.asarray(ps, np.float64).reshape(len(ts), len(labels)), fs)
        for tid, (ts, ps, fs) in acc.items()
    }
