"""Inline SVG plots for the ``emovid analyze`` report: emotion timelines, bar charts and value curves.

Drawn here as plain SVG strings (no plotting library), so that the HTML report opens offline.
"""

from __future__ import annotations

import html

import numpy as np

__all__ = ["EMOTION_COLOURS", "MAX_POINTS", "svg_bars", "svg_curves", "svg_timeline"]

#: Line colours per emotion (colour-blind-friendly Okabe-Ito palette + grey for neutral).
EMOTION_COLOURS = {
    "angry": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "happy": "#E69F00",
    "sad": "#0072B2",
    "surprise": "#56B4E9",
    "neutral": "#7F7F7F",
}
_EXTRA_COLOURS = ("#000000", "#F0E442", "#8C564B", "#17BECF", "#BCBD22", "#9467BD")
MAX_POINTS = 600  # timeline points per emotion; longer inputs are averaged into bins


def _colour(label: str, i: int) -> str:
    return EMOTION_COLOURS.get(label, _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)])


def _series(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """Times ``[T]`` and per-frame mean probabilities ``[T, K]`` over faces (NaN where a frame has no face)."""
    labels = result.get("labels") or []
    frames = result["frames"]
    t = np.array([f["t"] for f in frames], np.float64)
    p = np.full((len(frames), len(labels)), np.nan)
    for i, f in enumerate(frames):
        if f["faces"]:
            p[i] = np.mean([[face["emotions"].get(lab, np.nan) for lab in labels] for face in f["faces"]], axis=0)
    if len(t) > MAX_POINTS:
        edges = np.linspace(t[0], t[-1] + 1e-9, MAX_POINTS + 1)
        b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_POINTS - 1)
        tb = (edges[:-1] + edges[1:]) / 2
        pb = np.full((MAX_POINTS, len(labels)), np.nan)
        for k in range(MAX_POINTS):
            sel = p[b == k]
            sel = sel[~np.isnan(sel).any(1)] if len(sel) else sel
            if len(sel):
                pb[k] = sel.mean(0)
        return tb, pb
    return t, p


def svg_timeline(result: dict, width: int = 720, height: int = 220) -> str:
    """Inline SVG: each emotion's probability (mean over faces) against time; gaps where no face was found."""
    labels = result.get("labels") or []
    t, p = _series(result)
    left, right, top, bottom = 40, 110, 10, 28
    pw, ph = width - left - right, height - top - bottom
    t_max = float(t.max()) if len(t) and t.max() > 0 else 1.0
    parts = [f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>')
    for v in (0.0, 0.5, 1.0):
        y = top + ph * (1 - v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{v:g}</text>')
    for k in range(5):
        x = left + pw * k / 4
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{t_max * k / 4:.1f} s</text>'
        )
    single = len(t) == 1
    for i, lab in enumerate(labels):
        col = _colour(lab, i)
        runs: list[list[str]] = [[]]
        for tt, v in zip(t, p[:, i] if p.size else [], strict=False):
            if np.isnan(v):
                if runs[-1]:
                    runs.append([])
                continue
            x = left + pw * (tt / t_max if not single else 0.5)
            y = top + ph * (1 - float(v))
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{col}"/>')
            elif run:
                parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.5" points="{" ".join(run)}"/>')
        ly = top + 12 + 14 * i
        parts.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{col}"/>')
        parts.append(f'<text x="{left + pw + 24}" y="{ly + 1}" font-size="11">{html.escape(lab)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(emotions: dict, width: int = 320, height: int = 150) -> str:
    """Inline SVG bar chart of mean emotion probabilities (empty axes when there is no face)."""
    labels = list(emotions)
    parts = [f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if labels:
        row = (height - 4) / len(labels)
        for i, lab in enumerate(labels):
            v = emotions[lab]
            y = 2 + i * row
            parts.append(
                f'<text x="64" y="{y + row * 0.7:.1f}" text-anchor="end" font-size="11">{html.escape(lab)}</text>'
            )
            if v is not None:
                w = (width - 120) * float(v)
                parts.append(
                    f'<rect x="70" y="{y + 2:.1f}" width="{w:.1f}" height="{row - 4:.1f}" fill="{_colour(lab, i)}"/>'
                )
                parts.append(f'<text x="{74 + w:.1f}" y="{y + row * 0.7:.1f}" font-size="10">{float(v):.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CURVE_COLOURS = {"valence": "#0072B2", "arousal": "#D55E00", "intensity": "#E69F00", "embedding_norm": "#7F7F7F"}


def _binned(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`MAX_POINTS` points: long series are averaged into equal time bins."""
    if len(t) <= MAX_POINTS:
        return t, v
    edges = np.linspace(t[0], t[-1] + 1e-9, MAX_POINTS + 1)
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_POINTS - 1)
    n = np.bincount(b, minlength=MAX_POINTS)
    keep = n > 0
    vb = np.bincount(b, weights=v, minlength=MAX_POINTS)[keep] / n[keep]
    return ((edges[:-1] + edges[1:]) / 2)[keep], vb


def svg_curves(
    t: list[float] | np.ndarray,
    lines: dict[str, list[float]],
    lo: float | None = None,
    hi: float | None = None,
    duration: float | None = None,
    width: int = 720,
    height: int = 180,
) -> str:
    """Inline SVG: named value series against time ``t`` (seconds), on ``[lo, hi]`` (default: the data's range).

    The time axis runs from 0 to ``duration`` (default: the last time).
    """
    tt = np.asarray(t, np.float64)
    vals = {k: np.asarray([np.nan if x is None else x for x in v], np.float64) for k, v in lines.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()]) if vals else np.zeros(0)
    lo = float(finite.min()) if lo is None and finite.size else (0.0 if lo is None else lo)
    hi = float(finite.max()) if hi is None and finite.size else (1.0 if hi is None else hi)
    if hi - lo < 1e-9:  # a constant series sits in the middle of a small band
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top, bottom = 48, 120, 10, 28
    pw, ph = width - left - right, height - top - bottom
    t0 = 0.0  # videos start at 0 s: window midpoints are drawn where they fall in the video
    span = duration if duration and duration > 0 else (float(tt.max()) if tt.size and tt.max() > 0 else 1.0)
    parts = [f'<svg class="curves" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>')
    for k in range(3):
        v = lo + (hi - lo) * k / 2
        y = top + ph * (1 - k / 2)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{v:.3g}</text>')
    for k in range(5):
        x = left + pw * k / 4
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{t0 + span * k / 4:.1f} s</text>'
        )
    for i, (name, v) in enumerate(vals.items()):
        col = _CURVE_COLOURS.get(name, _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)])
        ok = np.isfinite(v) & np.isfinite(tt) if len(v) == len(tt) else np.zeros(0, bool)
        bt, bv = _binned(tt[ok], v[ok])
        pts = [
            f"{left + pw * (a - t0) / span:.1f},{top + ph * (1 - (b - lo) / (hi - lo)):.1f}"
            for a, b in zip(bt, bv, strict=True)
        ]
        if len(pts) == 1:
            cx, cy = pts[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{col}"/>')
        elif pts:
            parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.5" points="{" ".join(pts)}"/>')
        ly = top + 12 + 14 * i
        parts.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{col}"/>')
        parts.append(f'<text x="{left + pw + 24}" y="{ly + 1}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_ranked(values: dict[str, float], width: int = 480, label_width: int = 170, colour: str = "#0072B2") -> str:
    """Inline SVG bars of values in [0, 1] with room for long names (VCE's emotions), in the given order."""
    row = 18
    height = row * len(values) + 4
    parts = [f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (name, v) in enumerate(values.items()):
        y = 2 + i * row
        w = (width - label_width - 50) * min(max(float(v), 0.0), 1.0)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" font-size="11">{html.escape(name)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{colour}"/>'
            f'<text x="{label_width + w + 4:.1f}" y="{y + 13}" font-size="10">{float(v):.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
