"""HTML for the outputs of trained runs (``summary["tasks"]``, :mod:`emovid.predict` records) in the report."""

from __future__ import annotations

import html

from emovid.analyze.svg import _svg_ranked, svg_bars, svg_curves

__all__ = ["task_columns", "tasks_html"]


def task_columns(task: str) -> list[str]:
    """The value columns of a task's prediction records, in order (:func:`emovid.predict.task_outputs`)."""
    from emovid.predict import task_outputs

    return task_outputs(task)


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
