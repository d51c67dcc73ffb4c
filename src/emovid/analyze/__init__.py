"""End-to-end analysis: video/image/folder -> faces -> emotions over time -> JSON, CSV and an HTML report.

>>> from emovid.analyze import analyze_inputs
>>> summary = analyze_inputs(["talk.mp4"], "report/")   # doctest: +SKIP
>>> summary["results"][0]["dominant_emotion"]           # doctest: +SKIP
'happy'
"""

from emovid.analyze.batch import AnalyzeJob, analyze_inputs
from emovid.analyze.pipeline import (
    FER_LABELS,
    IMAGE_EXTENSIONS,
    Analysis,
    AnalysisResult,
    AnalyzeOptions,
    EmotionClassifier,
    InputItem,
    UnreadableImageError,
    analyze_file,
    analyze_video,
    collect_inputs,
    load_personality_predictor,
)
from emovid.analyze.report import svg_bars, svg_timeline, write_csv, write_report, write_result
from emovid.analyze.tables import result_columns, result_rows
from emovid.analyze.temporal import emotion_segments, smooth_probs

__all__ = [
    "FER_LABELS",
    "IMAGE_EXTENSIONS",
    "Analysis",
    "AnalysisResult",
    "AnalyzeOptions",
    "EmotionClassifier",
    "InputItem",
    "UnreadableImageError",
    "AnalyzeJob",
    "analyze_file",
    "analyze_inputs",
    "analyze_video",
    "collect_inputs",
    "emotion_segments",
    "load_personality_predictor",
    "result_columns",
    "result_rows",
    "smooth_probs",
    "svg_bars",
    "svg_timeline",
    "write_csv",
    "write_report",
    "write_result",
]
