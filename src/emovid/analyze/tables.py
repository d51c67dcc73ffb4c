"""A result of ``emovid analyze`` as a table: one row per sampled frame and face (``KEY.csv``, ``Analysis.rows()``).

Columns, in order: ``t, frame, face, track, x, y, w, h, score``, one per emotion label, then only what the result
holds: ``<label>_smoothed`` per label (with ``--smooth``), ``lm0_x, lm0_y, lm1_x, ...`` (detectors that give key
points), ``yaw, pitch, roll`` (detectors that estimate head pose, or the face mesh) and ``valence, arousal``
(expression models that give them, e.g. ``enet_b0_8_va_mtl``); action units would join the same way. Nothing is
filled in that was not measured: a face without a value has ``None`` (an empty CSV cell), and a frame without a
face has one row with only ``t`` and ``frame``.
"""

from __future__ import annotations

__all__ = ["AFFECT_COLUMNS", "BASE_COLUMNS", "POSE_COLUMNS", "result_columns", "result_rows"]

BASE_COLUMNS = ("t", "frame", "face", "track", "x", "y", "w", "h", "score")
POSE_COLUMNS = ("yaw", "pitch", "roll")
AFFECT_COLUMNS = ("valence", "arousal")


def _faces(result: dict):
    for fr in result.get("frames", ()):
        yield from fr["faces"]


def result_columns(result: dict) -> list[str]:
    """The columns of :func:`result_rows` for this result (see the module notes)."""
    labels = list(result.get("labels") or [])
    cols = [*BASE_COLUMNS, *labels]
    faces = list(_faces(result))
    if any("emotions_smoothed" in f for f in faces):
        cols += [f"{lab}_smoothed" for lab in labels]
    n_lm = max((len(f.get("landmarks") or ()) for f in faces), default=0)
    for k in range(n_lm):
        cols += [f"lm{k}_x", f"lm{k}_y"]
    if any(f.get("pose") for f in faces):
        cols += list(POSE_COLUMNS)
    cols += [c for c in AFFECT_COLUMNS if any(c in f for f in faces)]
    return cols


def result_rows(result: dict, faces_only: bool = False) -> list[dict]:
    """One dict per sampled frame and face, keys :func:`result_columns` (``None`` where there is no value).

    Args:
        result: an analysis result (:func:`emovid.analyze.analyze_file`), fresh or read from ``KEY.json``.
        faces_only: leave out the one row of each frame without a face.
    """
    cols = result_columns(result)
    labels = list(result.get("labels") or [])
    empty = dict.fromkeys(cols)
    rows = []
    for fr in result.get("frames", ()):
        if not fr["faces"] and not faces_only:
            rows.append({**empty, "t": fr["t"], "frame": fr.get("frame")})
        for k, face in enumerate(fr["faces"]):
            row = dict(empty)
            x, y, w, h = face["box"]
            row.update(t=fr["t"], frame=fr.get("frame"), face=k, track=face.get("track"), x=x, y=y, w=w, h=h)
            row["score"] = face.get("score")
            emo = face.get("emotions") or {}
            for lab in labels:
                row[lab] = emo.get(lab)
            smooth = face.get("emotions_smoothed")
            if smooth:
                for lab in labels:
                    row[f"{lab}_smoothed"] = smooth.get(lab)
            for j, pt in enumerate(face.get("landmarks") or ()):
                row[f"lm{j}_x"], row[f"lm{j}_y"] = pt[0], pt[1]
            pose = face.get("pose")
            if pose:
                for name in POSE_COLUMNS:
                    row[name] = pose.get(name)
            for name in AFFECT_COLUMNS:
                if name in face:
                    row[name] = face[name]
            rows.append(row)
    return rows
