"""Shared fixtures: small lossless videos whose frames encode their own index."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("EMOVID_OFFLINE", "1")  # nothing downloads during tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def index_frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """RGB frame that encodes ``i``: R = i % 256, G = i // 256 (top half), B = a horizontal ramp, white corner."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = i % 256
    img[: h // 2, :, 1] = i // 256
    img[h // 2 :, :, 1] = 255 - (i % 256)
    img[..., 2] = (np.arange(w) * 255 // max(w - 1, 1)).astype(np.uint8)[None, :]
    img[:4, :4] = 255  # top-left marker shows orientation
    return img


def frame_index(img: np.ndarray) -> int:
    """Inverse of :func:`index_frame` (reads the pixel just right of the marker)."""
    return int(img[0, 8, 0]) + 256 * int(img[0, 8, 1])


def make_index_video(path, n: int = 48, fps: float = 25, h: int = 48, w: int = 64, codec: str = "libx264rgb", **kw):
    from emovid.video import write_video

    opts = {"crf": 0} if codec == "libx264rgb" else {}
    opts.update(kw)
    write_video(path, (index_frame(i, h, w) for i in range(n)), fps=fps, codec=codec, **opts)
    return str(path)


@pytest.fixture(scope="session")
def index_video(tmp_path_factory):
    """48 frames, 25 fps, 64x48, lossless H.264 RGB, default GOP."""
    return make_index_video(tmp_path_factory.mktemp("video") / "index.mp4")


@pytest.fixture(scope="session")
def gop_video(tmp_path_factory):
    """300 frames, 30 fps, lossless H.264 RGB with a keyframe every 10 frames and B-frames."""
    return make_index_video(tmp_path_factory.mktemp("video") / "gop.mp4", n=300, fps=30, gop=10)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A small synthetic dataset in every label format (8 videos, 64 px, 1 s), made once per test module."""
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, 8, seed=2, size=64, fps=10, seconds=1.0, workers=1)
    return out


@pytest.fixture
def ds(clean, tmp_path):
    """A private copy of :func:`clean` that a test may damage."""
    import shutil

    shutil.copytree(clean, tmp_path / "ds")
    return tmp_path / "ds"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run on one intra-op thread: on a busy 2-core machine a second thread only spins against other
    processes (a 100-step training took 13-50 s with 2 threads, well under a second with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
