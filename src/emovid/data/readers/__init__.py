"""Label-format readers, one module per public format.

Each reader returns typed records (frozen dataclasses carrying ``video_id``, the resolved ``video_path`` and
the targets) and raises one :class:`~emovid.errors.LabelFormatError` naming the file and line/key on malformed
input, or, given a ``problems`` list, collects every problem there instead (see :mod:`._common`).
"""

from emovid.data.readers._common import PROBLEM_KINDS, Problem
from emovid.data.readers.captions import (
    PLUTCHIK_EMOTIONS,
    SENTIMENTS,
    CaptionRecord,
    read_emotion_captions,
    read_msrvtt_captions,
)
from emovid.data.readers.fiv2 import FIV2_TRAITS, FIV2Record, find_fiv2_videos, load_annotation_pickle, read_fiv2
from emovid.data.readers.intensity_csv import IntensityRecord, read_intensity_csv
from emovid.data.readers.mosei import (
    FER_CLASSES,
    MOSEI_CLASSES,
    MOSEI_EMOTIONS,
    MOSEI_TO_FER,
    MoseiRecord,
    mosei_distribution,
    read_mosei_csv,
    to_fer_order,
)
from emovid.data.readers.sewa import VARecord, read_va_csv
from emovid.data.readers.v2v import V2VComparison, read_v2v
from emovid.data.readers.vce import VCE_EMOTIONS, VCERecord, VideoMeta, read_vce, read_vce_metadata

__all__ = [
    "FER_CLASSES",
    "FIV2_TRAITS",
    "MOSEI_CLASSES",
    "MOSEI_EMOTIONS",
    "MOSEI_TO_FER",
    "PLUTCHIK_EMOTIONS",
    "PROBLEM_KINDS",
    "SENTIMENTS",
    "VCE_EMOTIONS",
    "CaptionRecord",
    "FIV2Record",
    "IntensityRecord",
    "MoseiRecord",
    "Problem",
    "V2VComparison",
    "VARecord",
    "VCERecord",
    "VideoMeta",
    "find_fiv2_videos",
    "load_annotation_pickle",
    "mosei_distribution",
    "read_emotion_captions",
    "read_fiv2",
    "read_intensity_csv",
    "read_msrvtt_captions",
    "read_mosei_csv",
    "read_v2v",
    "read_va_csv",
    "read_vce",
    "read_vce_metadata",
    "to_fer_order",
]
