"""Writers for ``emovid analyze``: per-input JSON, CSV and thumbnail strip, and one self-contained HTML report.

The HTML opens offline: plots are inline SVG (:mod:`emovid.analyze.svg`, no plotting library), thumbnails are
base64 JPEG ``data:`` URIs, the style sheet is inline, and nothing refers to another file or a network address.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from emovid.analyze.report_tasks import task_columns, tasks_html
from emovid.analyze.svg import EMOTION_COLOURS, MAX_POINTS, svg_bars, svg_curves, svg_timeline  # noqa: F401
from emovid.errors import display_path
from emovid.utils.io import atomic_open, atomic_path, write_json

__all__ = [
    "EMOTION_COLOURS",
    "read_result",
    "face_affect_html",
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

MAX_DETAILED = 300  # inputs drawn in full in one report; the rest are listed in the table only


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


def face_affect_html(result: dict) -> str:
    """The main face's head pose (median yaw/pitch/roll) and valence/arousal (timeline on videos), when measured."""
    s = result.get("summary") or {}
    main = (s.get("main_face") or {}).get("track")
    faces = [(fr["t"], f) for fr in result.get("frames", ()) for f in fr["faces"] if f.get("track") == main]
    parts = []
    poses = [f["pose"] for _, f in faces if f.get("pose")]
    if poses:
        med = {k: float(np.median([p[k] for p in poses])) for k in ("yaw", "pitch", "roll")}
        txt = ", ".join(f"{k} {v:+.0f}°" for k, v in med.items())
        parts.append(
            f'<p>Head pose of face {main} <span class="meta">(median of {len(poses)} frames)</span>: {txt}</p>'
        )
    va = [(t, f["valence"], f["arousal"]) for t, f in faces if "valence" in f and "arousal" in f]
    if va:
        mv, ma = float(np.mean([v for _, v, _ in va])), float(np.mean([a for _, _, a in va]))
        parts.append(f'<p>Valence {mv:+.2f}, arousal {ma:+.2f} <span class="meta">(face {main}, mean)</span></p>')
        if result.get("kind") == "video" and len(va) > 1:
            t = [x[0] for x in va]
            lines = {"valence": [x[1] for x in va], "arousal": [x[2] for x in va]}
            parts.append(svg_curves(t, lines, lo=-1.0, hi=1.0, duration=result.get("duration_s")))
    return "\n".join(parts)


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
    body.append(face_affect_html(result))
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
