"""The built-in offline example behind ``emovid demo``: analyse a face video and a photo with the bundled model.

Nothing is downloaded. The demo

1. draws a short face video with :mod:`emovid.data.synth` (one cartoon face whose expression changes every two
   seconds: neutral, happy, surprise, sad), probes it and saves a contact sheet of 16 uniformly sampled frames;
2. runs ``emovid analyze`` (:func:`emovid.analyze.analyze_inputs`) with the bundled FER2013 mini-Xception on that
   video and on the public-domain NASA photograph bundled as ``emovid/assets/astronaut.jpg``;
3. writes ``demo.json`` (what was drawn when, and what the model saw) beside the analysis report.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path

import numpy as np

from emovid.utils.io import atomic_path, write_json

#: The expressions of the demo video, in order, each ``SEGMENT_S`` seconds long.
DEMO_EXPRESSIONS = ("neutral", "happy", "surprise", "sad")
SEGMENT_S = 2.0
DEMO_FPS = 15
DEMO_SIZE = 192


def asset_path(name: str) -> Path:
    """Path of a file bundled in ``emovid/assets`` (sample media; licences in ``emovid/assets/README.md``)."""
    return Path(str(resources.files("emovid") / "assets" / name))


def sample_video(
    path: str | os.PathLike,
    expressions: tuple[str, ...] = DEMO_EXPRESSIONS,
    seconds_each: float = SEGMENT_S,
    fps: int = DEMO_FPS,
    size: int = DEMO_SIZE,
    seed: int = 0,
) -> str:
    """Write an H.264 video of one synthetic face showing ``expressions`` in turn, ``seconds_each`` each."""
    from emovid.data.readers.mosei import FER_CLASSES
    from emovid.data.synth import CLASS_VALENCE, background, render_frame, sample_latent, trajectories
    from emovid.video import write_video

    base = sample_latent(seed, 2)
    bg = background(base, size)
    n = int(round(seconds_each * fps))

    def frames():
        for name in expressions:
            strong = name != "neutral"
            lat = dataclasses.replace(
                base,
                emotion=FER_CLASSES.index(name),
                intensity=0.9 if strong else 0.05,
                valence=0.9 * CLASS_VALENCE[name],
                arousal=-0.6,  # small head motion: the expression, not the movement, is the point
            )
            traj = trajectories(lat, n, fps)
            for k in range(n):
                yield render_frame(lat, traj, k, size, bg)

    return write_video(path, frames(), fps=fps, crf=18)


def run_demo(output_dir: str | os.PathLike) -> dict:
    """Make the sample video in ``output_dir``, analyse it and the bundled photo, and summarise (``demo.json``)."""
    import cv2

    from emovid.analyze import AnalyzeOptions, analyze_inputs
    from emovid.analyze.report import read_result
    from emovid.video import VideoReader, uniform_indices

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / "sample.mp4"
    if not video.exists():
        sample_video(video)
    with VideoReader(video) as r:
        info = r.info
        idx = uniform_indices(info.num_frames, 16)
        frames = r.get_frames(idx, size=(96, 96))
    sheet = np.concatenate([np.concatenate(list(frames[i : i + 4]), axis=1) for i in range(0, 16, 4)], axis=0)
    sheet_path = out / "contact_sheet.png"
    with atomic_path(sheet_path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))

    photo = asset_path("astronaut.jpg")
    report_dir = out / "report"
    # the full face mesh (468 points, head pose, mesh-followed tracks) and smoothed per-face segments
    opts = AnalyzeOptions(fps=5.0, progress=False, overwrite=True, landmarks="full", smooth=0.6)
    run = analyze_inputs([video, photo], report_dir, options=opts)
    segments = []
    res = read_result(report_dir / "sample.json") or {"frames": []}
    for k, drawn in enumerate(DEMO_EXPRESSIONS):
        lo, hi = k * SEGMENT_S, (k + 1) * SEGMENT_S
        probs = [
            [face["emotions"][lab] for lab in res["labels"]]
            for fr in res["frames"]
            if lo <= fr["t"] < hi
            for face in fr["faces"]
        ]
        seen = res["labels"][int(np.argmax(np.mean(probs, 0)))] if probs else None
        segments.append({"from_s": lo, "to_s": hi, "drawn": drawn, "model": seen, "faces": len(probs)})
    summary = {
        "video": str(video),
        "probe": info.to_dict(),
        "sampled_frames": idx,
        "contact_sheet": str(sheet_path),
        "photo": str(photo),
        "report": run["report"],
        "segments": segments,
        "results": run["results"],
    }
    write_json(out / "demo.json", summary)
    return summary
