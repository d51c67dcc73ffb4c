"""emovid analyze over time: per-track smoothing, emotion segments, the table view (no model, no video)."""

from __future__ import annotations

import numpy as np
import pytest

from emovid.analyze import Analysis, AnalyzeOptions, emotion_segments, result_columns, result_rows, smooth_probs
from emovid.analyze.report import segments_html, segments_text, write_csv
from emovid.errors import ConfigError, EmovidError

L3 = ["sad", "happy", "fear"]


def _onehot(labels: list[str], names: list[str]) -> np.ndarray:
    p = np.full((len(names), len(labels)), 0.05)
    for i, n in enumerate(names):
        p[i, labels.index(n)] = 0.9
    return p / p.sum(1, keepdims=True)


def test_crying_to_laughing_gives_two_segments_and_flickers_are_merged():
    t = np.round(np.arange(75) * 0.2, 4)  # 15 s at 5 fps
    names = ["sad"] * 36 + ["fear"] * 2 + ["sad"] * 11 + ["happy"] * 3 + ["sad"] * 1 + ["happy"] * 22
    segs = emotion_segments(t, _onehot(L3, names), L3, min_s=1.0, step=0.2, end=15.0)
    # fear 7.2-7.6 s sits inside sadness; the one sad sample at 10.4 s inside laughter: both are folded in.
    assert segs == [
        {"emotion": "sad", "start": 0.0, "end": 9.8},
        {"emotion": "happy", "start": 9.8, "end": 15.0},
    ]
    assert segments_text(segs) == "sad 0.0–9.8 s, happy 9.8–15.0 s"
    # Every run is its own segment with min_s = 0; runs of the same emotion still cover the track end to end.
    fine = emotion_segments(t, _onehot(L3, names), L3, min_s=0, step=0.2, end=15.0)
    assert [s["emotion"] for s in fine] == ["sad", "fear", "sad", "happy", "sad", "happy"]
    assert all(a["end"] == b["start"] for a, b in zip(fine, fine[1:], strict=False))


def test_short_run_joins_the_neighbour_it_resembles_and_gaps_split():
    t = np.arange(12) * 0.25
    p = _onehot(L3, ["sad"] * 5 + ["fear"] * 2 + ["happy"] * 5)
    p[5:7, 1] += 0.3  # the fear samples lean to happy more than to sad
    p /= p.sum(1, keepdims=True)
    segs = emotion_segments(t, p, L3, min_s=1.0, step=0.25)
    assert [(s["emotion"], s["start"], s["end"]) for s in segs] == [("sad", 0.0, 1.25), ("happy", 1.25, 3.0)]
    # The face lost for 3 s: two parts that never bridge the gap, each long enough on its own.
    t2 = np.r_[np.arange(8) * 0.25, 5.0 + np.arange(8) * 0.25]
    segs = emotion_segments(t2, _onehot(L3, ["sad"] * 16), L3, step=0.25, end=6.9)
    assert [(s["start"], s["end"]) for s in segs] == [(0.0, 2.0), (5.0, 6.9)]
    assert emotion_segments([], np.zeros((0, 3)), L3) == []
    assert emotion_segments([0.0], [[0.1, 0.8, 0.1]], L3) == [{"emotion": "happy", "start": 0.0, "end": 0.0}]


def test_smoothing_is_a_centred_window_in_time():
    t = np.array([0.0, 0.2, 0.4, 0.6, 2.0])
    p = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], np.float64)
    s = smooth_probs(t, p, 0.4)  # +-0.2 s
    assert s[0] == pytest.approx([0.5, 0.5]) and s[1] == pytest.approx([2 / 3, 1 / 3])
    assert s[4] == pytest.approx([0, 1])  # nothing else within 0.2 s of 2.0 s
    assert s.sum(1) == pytest.approx(np.ones(5))
    assert np.array_equal(smooth_probs(t, p, 0), p)
    with pytest.raises(ConfigError, match="--smooth must be"):
        AnalyzeOptions(smooth=-1)
    with pytest.raises(ConfigError, match="--min-segment must be"):
        AnalyzeOptions(min_segment=float("nan"))


def _result() -> dict:
    emo = {"angry": 0.1, "happy": 0.9}
    face = {"box": [1, 2, 3, 4], "score": 0.9, "track": 0, "emotions": emo, "emotions_smoothed": emo}
    lm = {**face, "track": 1, "landmarks": [[5.0, 6.0], [7.0, 8.0]], "pose": {"yaw": 10.0, "pitch": -2.0, "roll": 0.5}}
    segs = [{"track": 0, "emotion": "happy", "start": 0.0, "end": 0.4}]
    return {
        "kind": "video",
        "labels": ["angry", "happy"],
        "smooth_s": 0.5,
        "frames": [{"t": 0.0, "frame": 0, "faces": [face, lm]}, {"t": 0.2, "frame": 5, "faces": []}],
        "summary": {"segments": segs},
    }


def test_rows_columns_csv_and_pandas(tmp_path):
    res = _result()
    cols = result_columns(res)
    assert cols == [
        *["t", "frame", "face", "track", "x", "y", "w", "h", "score", "angry", "happy"],
        *["angry_smoothed", "happy_smoothed", "lm0_x", "lm0_y", "lm1_x", "lm1_y", "yaw", "pitch", "roll"],
    ]
    rows = result_rows(res)
    assert len(rows) == 3 and all(list(r) == cols for r in rows)
    assert rows[0]["lm0_x"] is None and rows[0]["yaw"] is None  # the first face has neither: nothing made up
    assert rows[1]["lm1_y"] == 8.0 and rows[1]["yaw"] == 10.0 and rows[1]["happy_smoothed"] == 0.9
    assert rows[2]["t"] == 0.2 and rows[2]["frame"] == 5 and rows[2]["face"] is None
    assert len(result_rows(res, faces_only=True)) == 2
    a = Analysis(res)
    assert a.rows() == rows and a.columns() == cols and a.summary["segments"]
    # A detector without key points or pose: the base columns only.
    plain = {"labels": ["happy"], "frames": [{"t": 0.0, "frame": 0, "faces": [{"box": [0, 0, 1, 1], "score": 1}]}]}
    assert result_columns(plain) == ["t", "frame", "face", "track", "x", "y", "w", "h", "score", "happy"]
    write_csv(tmp_path / "x.csv", res)
    lines = (tmp_path / "x.csv").read_text().splitlines()
    assert lines[0] == ",".join(cols) and lines[3] == "0.2,5" + "," * (len(cols) - 2)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(EmovidError, match="pip install pandas"):
            a.to_pandas()
    else:
        df = a.to_pandas()
        assert list(df.columns) == cols and len(df) == 3


def test_report_lists_segments_per_main_track():
    res = _result()
    res["summary"]["segments"] += [
        {"track": 1, "emotion": "sad", "start": 0.0, "end": 7.2},
        {"track": 1, "emotion": "happy", "start": 9.8, "end": 15.0},
    ]
    html = segments_html(res)
    assert "face 0: happy 0.0–0.4 s" in html and "face 1: sad 0.0–7.2 s, happy 9.8–15.0 s" in html
    assert "smoothed" in html
    assert segments_html({"summary": {}}) == ""
