"""Writers for ``emovid analyze``: per-input JSON, CSV and thumbnail strip, and one self-contained HTML report.

The HTML opens offline: plots are inline SVG drawn here (no plotting library), thumbnails are base64 JPEG
``data:`` URIs, the style sheet is inline, and nothing refers to another file or a network address.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from emovid.errors import display_path
from emovid.utils.io import atomic_open, atomic_path, write_json

__all__ = [
    "EMOTION_COLOURS",
    "read_result",
    "segments_html",
    "segments_text",
    "svg_bars",
    "svg_curves",
    "svg_timeline",
    "task_columns",
    "tasks_html",
    "write_csv",
    "write_report",
    "write_result",
]

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
MAX_DETAILED = 300  # inputs drawn in full in one report; the rest are listed in the table only


def _colour(label: str, i: int) -> str:
    return EMOTION_COLOURS.get(label, _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)])


def write_csv(path: str | os.PathLike, result: dict) -> None:
    """One row per sampled frame and face (a frame without a face gives one row with empty face columns).

    Columns: :func:`emovid.analyze.tables.result_columns` (``t, frame, face, track, x, y, w, h, score``, the
    emotions, then smoothed emotions, key points and head pose when the result has them).
    """
    from emovid.analyze.tables import result_columns, result_rows

    cols = result_columns(result)
    with atomic_open(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for row in result_rows(result):
            w.writerow(["" if row[c] is None else row[c] for c in cols])


def _thumb_strip(thumbs: list[tuple[int, np.ndarray, str]]) -> np.ndarray | None:
    if not thumbs:
        return None
    return np.concatenate([t for _, t, _ in thumbs], axis=1)


def write_result(out: str | os.PathLike, key: str, result: dict, thumbs: list[tuple[int, np.ndarray, str]]) -> dict:
    """``KEY.csv``, ``KEY.faces.jpg`` (thumbnails side by side, with their track ids in ``result``) and, last,
    ``KEY.json`` — written last so that its presence means the input is complete (resume).

    Returns:
        the result as written (with its ``thumbnails`` list).
    """
    import cv2

    out = Path(out)
    write_csv(out / f"{key}.csv", result)
    strip = _thumb_strip(thumbs)
    jpg = out / f"{key}.faces.jpg"
    if strip is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            with atomic_path(jpg) as tmp:
                tmp.write_bytes(buf.tobytes())
    elif jpg.exists():
        jpg.unlink()
    result = dict(result)
    result["thumbnails"] = [{"track": int(t), "label": lab} for t, _, lab in thumbs]
    # Hour-long inputs have tens of thousands of frames: pretty-printing would multiply the file size.
    write_json(out / f"{key}.json", result, indent=2 if len(result.get("frames", ())) <= 2000 else None)
    return result


def read_result(path: str | os.PathLike) -> dict | None:
    """A result JSON written earlier, or ``None`` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


# ---- plots --------------------------------------------------------------------------------------------------


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


# ---- outputs of trained runs (emovid.predict records) ---------------------------------------------------------

_CURVE_COLOURS = {"valence": "#0072B2", "arousal": "#D55E00", "intensity": "#E69F00", "embedding_norm": "#7F7F7F"}


def task_columns(task: str) -> list[str]:
    """The value columns of a task's prediction records, in order (:func:`emovid.predict.task_outputs`)."""
    from emovid.predict import task_outputs

    return task_outputs(task)


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


def _series_times(series: dict) -> tuple[list[float], float | None]:
    """Per-frame ``t``, or the middle of each window (``t_start``/``t_end``), and where the last window ends."""
    if "t" in series:
        return list(series["t"]), None
    ends = list(series.get("t_end", []))
    mids = [(a + b) / 2 for a, b in zip(series.get("t_start", []), ends, strict=False)]
    return mids, (max(ends) if ends else None)


def _num(v) -> str:
    return "—" if v is None else f"{float(v):.3f}"


def _values_table(rec: dict, names) -> str:
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{_num(rec.get(n))}</td></tr>" for n in names)
    return f"<table>{rows}</table>"


def _task_html(task: str, rec: dict) -> str:
    from emovid.data.readers import FIV2_TRAITS, MOSEI_CLASSES, VCE_EMOTIONS

    series = rec.get("series") or {}
    t, end = _series_times(series)
    body: list[str] = []
    if rec.get("faces") == 0:
        body.append("<p>No face found: no outputs.</p>")
    if task == "intensity":
        body.append(
            f"<p>Intensity: <b>{_num(rec.get('intensity'))}</b> "
            f'<span class="meta">(embedding norm {_num(rec.get("embedding_norm"))})</span></p>'
        )
        if t and "intensity" in series:
            body.append(svg_curves(t, {"intensity": series["intensity"]}, duration=end))
    elif task == "v2v":
        body.append(f"<p>Valence (preference score, higher = more pleasant): <b>{_num(rec.get('valence'))}</b></p>")
        if t and "valence" in series:
            body.append(svg_curves(t, {"valence": series["valence"]}, duration=end))
    elif task == "valence_arousal":
        body.append(
            f"<p>Valence <b>{_num(rec.get('valence'))}</b>, arousal <b>{_num(rec.get('arousal'))}</b> "
            '<span class="meta">(means over the frames, in [-1, 1])</span></p>'
        )
        lines = {k: series[k] for k in ("valence", "arousal") if k in series}
        if t and lines:
            body.append(svg_curves(t, lines, lo=-1.0, hi=1.0, duration=end))
    elif task == "vce":
        top = [n for n in str(rec.get("top3") or "").split(";") if n]
        items = "".join(f"<li>{html.escape(n)} ({_num(rec.get(n))})</li>" for n in top)
        body.append(f"<p>Strongest emotions:</p><ol>{items}</ol>")
        ranked = sorted((n for n in VCE_EMOTIONS if rec.get(n) is not None), key=lambda n: -float(rec[n]))[:10]
        if ranked:
            body.append(_svg_ranked({n: rec[n] for n in ranked}))
    if task in ("emotion_dist", "fusion") and rec.get("faces") != 0:
        body.append("<p>Emotions (MOSEI classes, a distribution)</p>")
        body.append(svg_bars({c: rec.get(c) for c in MOSEI_CLASSES}))
    if task in ("personality", "fusion") and rec.get("faces") != 0:
        body.append(f"<p>Personality (OCEAN, in [0, 1])</p>{_values_table(rec, FIV2_TRAITS)}")
    known = ("intensity", "v2v", "valence_arousal", "vce", "emotion_dist", "personality", "fusion")
    if task not in known:  # a task added later: its numbers as a table
        names = [k for k, v in rec.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        body.append(_values_table(rec, names))
    return "\n".join(body)


def tasks_html(summary_tasks: dict) -> str:
    """HTML for ``summary["tasks"]``: per task name, its :mod:`emovid.predict` record (with or without ``series``).

    Intensity and valence/arousal get their value and an inline-SVG curve over time (from ``series``), VCE its top 3
    and a bar chart of the strongest emotions, MOSEI emotions a bar chart, traits a table. Self-contained (no
    scripts, no files); uses the report's style sheet.
    """
    parts = []
    for task, rec in summary_tasks.items():
        if not isinstance(rec, dict):
            continue
        head = f"<h3>{html.escape(str(task))}</h3>"
        if rec.get("error"):  # a task that failed on this input says so instead of showing nothing
            parts.append(f'{head}<p class="err">{html.escape(str(rec["error"]))}</p>')
            continue
        dmg = ""
        if rec.get("damaged"):
            reasons = "; ".join(str(r) for r in rec["damaged"].get("reasons") or []) or "damaged"
            dmg = f'<p class="meta">Damaged video, scored as far as it decodes: {html.escape(reasons)}</p>'
        parts.append(f'<div class="task">{head}{dmg}{_task_html(str(task), rec)}</div>')
    return "\n".join(parts)


# ---- the report ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px} h2{font-size:17px;margin:28px 0 6px;word-break:break-all}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.meta{color:#555;font-size:13px} .err{color:#b00020} .thumbs img{height:96px;margin-right:4px;border-radius:4px}
.thumbs figure{display:inline-block;margin:0 6px 0 0;text-align:center;font-size:11px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
"""


def _thumbs_html(out: Path, key: str, result: dict) -> str:
    jpg = out / f"{key}.faces.jpg"
    info = result.get("thumbnails") or []
    if not jpg.exists() or not info:
        return ""
    import cv2

    strip = cv2.imdecode(np.fromfile(jpg, np.uint8), cv2.IMREAD_COLOR)  # any file name, unlike cv2.imread
    if strip is None:
        return ""
    n = len(info)
    size = strip.shape[1] // max(n, 1)
    figs = []
    for k, meta in enumerate(info):
        ok, buf = cv2.imencode(".jpg", strip[:, k * size : (k + 1) * size], [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            continue
        b64 = base64.b64encode(buf.tobytes()).decode("ascii")
        cap = f"face {meta['track']}" + (f": {html.escape(meta['label'])}" if meta.get("label") else "")
        figs.append(
            f'<figure><img alt="{cap}" src="data:image/jpeg;base64,{b64}"><figcaption>{cap}</figcaption></figure>'
        )
    return f'<div class="thumbs">{"".join(figs)}</div>'


def _section(out: Path, key: str, result: dict) -> str:
    s = result.get("summary", {})
    dom = s.get("dominant_emotion")
    dom_txt = html.escape(dom) if dom else "none (no face found)"
    model = f"model {html.escape(str(result.get('model')))}"
    if result.get("kind") == "image":
        meta = f"image, {s.get('faces_found', 0)} face(s); {model}"
    else:
        smooth = f", smoothed over {result['smooth_s']:g} s" if result.get("smooth_s") else ""
        meta = (
            f"{html.escape(result.get('kind', ''))}, {result.get('duration_s', 0):.1f} s, "
            f"{s.get('frames_analyzed', len(result.get('frames', [])))} frames analysed at "
            f"{result.get('fps_analyzed', 0):g} fps, {s.get('frames_with_face', 0)} with a face, "
            f"{s.get('faces_found', 0)} distinct face(s){smooth}; {model}"
        )
    body = [f"<h2>{html.escape(display_path(key))}</h2>", f'<div class="meta">{meta}</div>']
    body.append(f"<p>Dominant emotion: <b>{dom_txt}</b></p>")
    if result.get("kind") != "image":
        body.append(segments_html(result))
    plot = svg_timeline(result) if result.get("kind") == "video" else ""
    body.append(f'<div class="row">{plot}{svg_bars(s.get("emotions_mean") or {})}</div>')
    if s.get("tasks"):  # trained runs given with --checkpoint (their traits are shown there)
        body.append(tasks_html(s["tasks"]))
    elif s.get("personality"):
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in s["personality"].items())
        body.append(f"<p>Personality (fusion model)</p><table>{rows}</table>")
    body.append(_thumbs_html(out, key, result))
    return "\n".join(body)


MAX_SEGMENT_TRACKS = 4  # faces whose segments the report lists (the most often seen)


def segments_text(segments: list[dict]) -> str:
    """``"sad 0.0–7.2 s, happy 9.8–15.0 s"`` for one track's segments."""
    return ", ".join(f"{s['emotion']} {float(s['start']):.1f}–{float(s['end']):.1f} s" for s in segments)


def segments_html(result: dict, max_tracks: int = MAX_SEGMENT_TRACKS) -> str:
    """The emotion segments (``summary["segments"]``) of the main tracks, one line per face, most seen first.

    Empty when the result has none (no face, or a result written before segments existed).
    """
    segs = (result.get("summary") or {}).get("segments") or []
    if not segs:
        return ""
    by_track: dict[int, list[dict]] = {}
    for seg in segs:
        by_track.setdefault(int(seg["track"]), []).append(seg)
    seen: dict[int, int] = {}
    for fr in result.get("frames", ()):
        for face in fr["faces"]:
            if "track" in face:
                seen[int(face["track"])] = seen.get(int(face["track"]), 0) + 1
    order = sorted(by_track, key=lambda k: (-seen.get(k, 0), k))
    items = "".join(f"<li>face {k}: {html.escape(segments_text(by_track[k]))}</li>" for k in order[:max_tracks])
    more = len(order) - max_tracks
    tail = f'<p class="meta">{more} more face(s): see the JSON.</p>' if more > 0 else ""
    basis = "smoothed probabilities" if result.get("smooth_s") else "per-frame probabilities"
    return f'<p>Emotion segments <span class="meta">(dominant emotion, {basis})</span></p><ul>{items}</ul>{tail}'


def write_report(out: str | os.PathLike, entries: list[dict]) -> Path:
    """Write ``OUT/report.html`` for a run: a summary table and, per input, timeline, mean emotions, faces.

    ``entries``: dicts with ``key`` and either ``result`` (just computed), ``json`` (a finished earlier result) or
    ``error``.
    """
    out = Path(out)
    rows, sections = [], []
    for n, e in enumerate(entries):
        key = e["key"]
        res = e.get("result")
        if res is None and e.get("json") is not None:
            res = read_result(e["json"])
        if res is None:
            err = html.escape(display_path(e.get("error", "result unreadable")))
            rows.append(f'<tr><td>{html.escape(display_path(key))}</td><td colspan="4" class="err">{err}</td></tr>')
            continue
        s = res.get("summary", {})
        dom = s.get("dominant_emotion") or "—"
        link = (
            f'<a href="#r{n}">{html.escape(display_path(key))}</a>'
            if n < MAX_DETAILED
            else html.escape(display_path(key))
        )
        rows.append(
            f"<tr><td>{link}</td><td>{html.escape(dom)}</td><td>{s.get('faces_found', 0)}</td>"
            f"<td>{s.get('frames_with_face', 0)} / {s.get('frames_analyzed', len(res.get('frames', [])))}</td>"
            f"<td>{res.get('duration_s', 0):.1f}</td></tr>"
        )
        if n < MAX_DETAILED:
            sections.append(f'<section id="r{n}">{_section(out, key, res)}</section>')
    more = ""
    if len(entries) > MAX_DETAILED:
        more = f"<p class='meta'>Details are shown for the first {MAX_DETAILED} inputs; see the JSON files.</p>"
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>emovid analyze report</title>'
        f"<style>{_CSS}</style></head><body><h1>emovid analyze</h1>"
        f'<p class="meta">{len(entries)} input(s). Probabilities are the model\'s softmax outputs per face; the '
        "timeline averages the faces of each frame.</p>"
        "<table><tr><th>input</th><th>dominant emotion</th><th>faces</th><th>frames with a face</th>"
        f"<th>duration (s)</th></tr>{''.join(rows)}</table>{more}{''.join(sections)}</body></html>\n"
    )
    path = out / "report.html"
    with atomic_open(path, "w") as f:
        f.write(doc)
    return path
