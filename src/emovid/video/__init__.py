"""Video I/O: probing, streaming decode, clip sampling and clip transforms."""

from emovid.video.damage import damage_message
from emovid.video.decode import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoReader,
    is_video_path,
    probe,
    read_frames,
)
from emovid.video.encode import write_video
from emovid.video.sampling import (
    ClipSampler,
    center_clip_indices,
    indices_at_rate,
    parse_sampler,
    random_clip_indices,
    sample_times,
    sliding_window_indices,
    uniform_indices,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "ClipSampler",
    "VideoInfo",
    "VideoReader",
    "center_clip_indices",
    "damage_message",
    "indices_at_rate",
    "is_video_path",
    "parse_sampler",
    "probe",
    "random_clip_indices",
    "read_frames",
    "sample_times",
    "sliding_window_indices",
    "uniform_indices",
    "write_video",
]
