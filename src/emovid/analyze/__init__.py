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
    AnalyzeOptions,
    EmotionClassifier,
    InputItem,
    UnreadableImageError,
    analyze_file,
    collect_inputs,
    load_personality_predictor,
)
from emovid.analyze.report import svg_bars, svg_timeline, write_csv, write_report, write_result

__all__ = [
    "FER_LABELS",
    "IMAGE_EXTENSIONS",
    "Analysis",
    "AnalyzeOptions",
    "EmotionClassifier",
    "InputItem",
    "UnreadableImageError",
    "AnalyzeJob",
    "analyze_file",
    "analyze_inputs",
    "collect_inputs",
    "load_personality_predictor",
    "svg_bars",
    "svg_timeline",
    "write_csv",
    "write_report",
    "write_result",
]
