"""Synthetic labelled videos: determinism, layout, and that the labels are visibly present in decoded frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from emovid.cli import main
from emovid.data.synth import generate, render_frame, sample_latent, trajectories
from emovid.video import VideoReader, probe

LABEL_FILES = [
    "intensity.csv",
    "vce/metadata.json",
    "vce/train_labels.json",
    "vce/test_labels.json",
    "v2v/metadata.json",
    "v2v/train_labels.json",
    "v2v/test_labels.json",
    "v2v/listwise_labels.json",
    "mosei.csv",
    "fiv2/annotation_training.pkl",
    "fiv2/annotation_validation.pkl",
    "fiv2/annotation_test.pkl",
    "va.csv",
    "captions.json",
    "msrvtt_captions.csv",
    "msrvtt_captions.json",
    "synth_manifest.json",
]
SEED, SIZE, FPS, SECONDS = 5, 96, 15, 2.0


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, generate(out, 16, seed=SEED, size=SIZE, fps=FPS, seconds=SECONDS, workers=2)


def test_labels_are_byte_identical_for_a_seed(synth, tmp_path):
    out, _ = synth
    again = generate(tmp_path / "b", 16, seed=SEED, size=SIZE, fps=FPS, seconds=SECONDS, render=False)
    for name in LABEL_FILES:
        a, b = (out / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        if name == "synth_manifest.json":
            a = a.replace(b'"rendered": true', b'"rendered": false')
        assert a == b, name
    other = generate(tmp_path / "c", 16, seed=SEED + 1, size=SIZE, fps=FPS, seconds=SECONDS, render=False)
    assert (tmp_path / "c" / "intensity.csv").read_bytes() != (out / "intensity.csv").read_bytes()
    assert other["videos"][0]["intensity"] != again["videos"][0]["intensity"]


def test_latents_do_not_depend_on_video_count(synth, tmp_path):
    _, m = synth
    small = generate(tmp_path, 4, seed=SEED, size=SIZE, fps=FPS, seconds=SECONDS, render=False)
    for a, b in zip(small["videos"], m["videos"], strict=False):
        assert (a["intensity"], a["valence"], a["emotion"]) == (b["intensity"], b["valence"], b["emotion"])


def test_videos_and_manifest(synth):
    out, m = synth
    assert m["num_videos"] == 16 and m["num_frames"] == 30
    assert json.loads((out / "synth_manifest.json").read_text()) == m
    assert {v["split"] for v in m["videos"]} == {"train", "val", "test"}
    for v in m["videos"][:4]:
        info = probe(out / v["file"])
        assert (info.width, info.height, info.num_frames, info.codec) == (SIZE, SIZE, 30, "h264")
        assert info.fps == pytest.approx(FPS)
        assert (out / v["fiv2_file"]).samefile(out / v["file"]) or (out / v["fiv2_file"]).stat().st_size > 0
    assert set(m["formats"]) == {"intensity", "vce", "v2v", "mosei", "fiv2", "va", "captions", "msrvtt"}


def test_render_frame_is_deterministic():
    lat = sample_latent(0, 3)
    tr = trajectories(lat, 10, 15)
    np.testing.assert_array_equal(render_frame(lat, tr, 4, 112), render_frame(lat, tr, 4, 112))


def _frame_stats(out, v):
    """Mouth openness, mouth curvature and motion energy measured on decoded frames."""
    lat = sample_latent(SEED, int(v["video_id"]))
    with VideoReader(out / v["file"]) as r:
        frames = r.get_frames(range(len(r))).astype(np.float32)
    tr = trajectories(lat, len(frames), FPS)
    opens, curv = [], []
    for k, f in enumerate(frames):
        u = 0.28 * SIZE * lat.scale
        cx = SIZE / 2 + (lat.dx + tr["offset_x"][k]) * SIZE
        my = SIZE / 2 + 0.03 * SIZE + (lat.dy + tr["offset_y"][k]) * SIZE + 0.65 * u
        y0, x0 = max(int(my - 0.45 * u), 0), max(int(cx - 0.8 * u), 0)
        crop = f[y0 : int(my + 0.5 * u), x0 : int(cx + 0.8 * u)]
        red, green = crop[..., 0], crop[..., 1]
        mouth = (red - green > 50) & (green < 80)  # lips and mouth interior: red, dark, unlike skin or blush
        opens.append(((red < 120) & (green < 45) & mouth).sum() / u**2)
        ys, xs = np.nonzero(mouth)
        curv.append(-np.polyfit((xs + x0 - cx) / u, (ys + y0 - my) / u, 2)[0])  # corners up -> positive
    return np.mean(opens), np.mean(curv), np.abs(np.diff(frames, axis=0)).mean()


def test_labels_are_visible_in_decoded_frames(synth):
    out, m = synth
    stats = np.array([_frame_stats(out, v) for v in m["videos"]])
    intensity = [v["intensity"] for v in m["videos"]]
    valence = [v["valence_rendered_mean"] for v in m["videos"]]
    arousal = [v["arousal_rendered_mean"] for v in m["videos"]]
    assert spearmanr(stats[:, 0], intensity)[0] > 0.75  # mouth openness tracks intensity
    assert spearmanr(stats[:, 1], valence)[0] > 0.7  # mouth curvature tracks valence
    assert spearmanr(stats[:, 2], arousal)[0] > 0.7  # motion energy tracks arousal


def test_haar_detects_most_faces():
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    hits = total = 0
    for i in range(28):
        lat = sample_latent(11, i)
        tr = trajectories(lat, 15, 15)
        for k in (0, 7, 14):
            gray = cv2.cvtColor(render_frame(lat, tr, k, 112), cv2.COLOR_RGB2GRAY)
            hits += len(cascade.detectMultiScale(gray, 1.1, 3, minSize=(30, 30))) > 0
            total += 1
    assert hits / total > 0.7


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["synth", str(out), "--videos", "3", "--seed", "1", "--seconds", "1", "--size", "64", "--workers", "1"])
    assert code == 0
    assert "wrote 3 videos" in capsys.readouterr().out
    assert len(list((out / "videos").glob("*.mp4"))) == 3
    assert main(["synth", str(out), "--videos", "1", "--size", "63"]) != 0
    assert "--size must be an even number" in capsys.readouterr().err
