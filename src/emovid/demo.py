"""The built-in offline example behind ``emovid demo``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emovid.utils.io import atomic_path, write_json


def sample_video(path: str | os.PathLike, seconds: float = 4.0, fps: int = 30, size: tuple[int, int] = (256, 320)) -> str:
    """Write a small H.264 sample video (a moving, colour-cycling disc on a gradient) to ``path``."""
    from emovid.video import write_video

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 96)], -1).astype(np.uint8)

    def frames():
        n = int(seconds * fps)
        for i in range(n):
            img = base.copy()
            cx = int(w / 2 + w / 3 * np.sin(2 * np.pi * i / n))
            cy = int(h / 2 + h / 4 * np.cos(2 * np.pi * i / n))
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(h, w) // 6) ** 2
            img[mask] = (255, (i * 8) % 256, 0)
            yield img

    return write_video(path, frames(), fps=fps, crf=18)


def run_demo(output_dir: str | os.PathLike) -> dict:
    """Make a sample video in ``output_dir``, probe it, sample 16 uniform frames and save them as a contact sheet."""
    import cv2

    from emovid.video import VideoReader, uniform_indices

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / "sample.mp4"
    if not video.exists():
        sample_video(video)
    with VideoReader(video) as r:
        info = r.info
        idx = uniform_indices(info.num_frames, 16)
        frames = r.get_frames(idx, size=(96, 120))
    sheet = np.concatenate([np.concatenate(list(frames[i : i + 4]), axis=1) for i in range(0, 16, 4)], axis=0)
    sheet_path = out / "contact_sheet.png"
    with atomic_path(sheet_path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    summary = {"video": str(video), "probe": info.to_dict(), "sampled_frames": idx, "contact_sheet": str(sheet_path)}
    write_json(out / "demo.json", summary)
    return summary
