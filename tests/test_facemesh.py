"""MediaPipe face mesh in PyTorch: the port against the TFLite model's outputs, the crop mapping and the head pose.

``tests/fixtures/facemesh_ref.npz`` holds two 192x192 RGB crops (uniform noise, a synthetic face drawing) and the
raw outputs of ``face_landmark.tflite`` run on them by ``ai-edge-litert`` (reference kernels);
``tools/convert_facemesh.py`` made it together with the bundled weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emovid.errors import ModelError
from emovid.faces.facemesh import (
    CANONICAL_POINTS,
    POSE_INDICES,
    FaceMesh,
    crop_transform,
    euler_to_matrix,
    head_pose,
)

FIXTURE = Path(__file__).parent / "fixtures" / "facemesh_ref.npz"


@pytest.fixture(scope="module")
def mesh():
    return FaceMesh()


def test_port_matches_tflite_outputs(mesh):
    ref = np.load(FIXTURE)
    pts, logits = mesh.raw(ref["images"])
    assert pts.shape == (2, 468, 3) and logits.shape == (2,)
    want = ref["landmarks"].reshape(2, 468, 3)
    # Outputs reach ~180 crop pixels, where a float32 ulp is 1.5e-5; the two runtimes sum the 1x1 / 3x3 products in
    # different orders, so differences of a few ulps of the output (observed: 1.5e-4, 10 ulps) are rounding.
    assert np.abs(pts - want).max() <= 1e-4 + 2e-6 * np.abs(want).max()
    assert np.abs(logits - ref["face_logits"][:, 0]).max() <= 1e-4
    assert logits[0] < 0 < logits[1]  # noise is not a face, the drawing is


def test_shapes_and_scores(mesh):
    face = np.load(FIXTURE)["images"][1]
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[24:216, 64:256] = face
    one = mesh.landmarks(frame, (96, 56, 128, 128))
    assert one.shape == (468, 3) and one.dtype == np.float32
    many, scores = mesh.landmarks_batch(frame, [(96, 56, 128, 128), (0, 0, 40, 40)], [None, None], with_scores=True)
    assert many.shape == (2, 468, 3) and scores.shape == (2,) and scores[0] > 0.5
    assert np.allclose(many[0], one, atol=1e-3)
    # the mesh lies on the drawn face (frame: centre (160, 126), nose line down to y = 141): nose tip on the nose
    assert abs(one[1, 0] - 160) < 15 and 115 < one[1, 1] < 150
    assert one[33, 0] < one[1, 0] < one[263, 0]  # the subject's right eye on the image's left
    assert mesh.landmarks_batch(frame, []).shape == (0, 468, 3)
    assert mesh.landmarks(frame[..., 0], (96, 56, 128, 128)).shape == (468, 3)  # grey frames are accepted
    with pytest.raises(ModelError, match="key-point sets"):
        mesh.landmarks_batch(frame, [(0, 0, 10, 10)], [])


def test_crop_transform():
    a = crop_transform((100, 50, 80, 40))  # centre (140, 70), side 1.5 * 80 = 120 -> 0.625 frame px per crop px
    assert a @ (96, 96, 1) == pytest.approx((140, 70))
    assert a @ (0, 0, 1) == pytest.approx((80, 10)) and a @ (192, 192, 1) == pytest.approx((200, 130))
    # eyes on a line tilted 30 degrees clockwise (y down): the crop's x axis follows it
    kp = [0, 0, math.cos(math.pi / 6), math.sin(math.pi / 6), 5, 5]
    a = crop_transform((0, 0, 64, 64), kp)
    step = a @ (97, 96, 1) - a @ (96, 96, 1)
    assert step == pytest.approx(0.5 * np.array([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    assert a @ (96, 96, 1) == pytest.approx((32, 32))


def test_mapping_back(mesh, monkeypatch):
    frame = np.zeros((200, 300, 3), np.uint8)
    seen = []

    def fake_raw(crops):
        seen.append(crops)
        pts = np.zeros((len(crops), 468, 3), np.float32)
        pts[:, 0] = (96, 96, 0)  # crop centre
        pts[:, 1] = (192, 96, 19.2)  # right edge, depth of 0.1 crop side
        pts[:, 2] = (96, 0, -9.6)  # top edge
        return pts, np.zeros(len(crops), np.float32)

    monkeypatch.setattr(mesh, "raw", fake_raw)
    box = (100, 40, 60, 80)  # centre (130, 80), side 120 -> 0.625 frame px per crop px
    out = mesh.landmarks(frame, box)
    assert seen[0].shape == (1, 192, 192, 3)
    assert out[0] == pytest.approx((130, 80, 0)) and out[1] == pytest.approx((190, 80, 12))
    assert out[2] == pytest.approx((130, 20, -6))
    # rotated by the eyes (90 degrees: left eye straight below the right one): crop x -> frame +y, crop y -> frame -x
    out = mesh.landmarks(frame, box, [(130, 60), (130, 100)])
    assert out[0][:2] == pytest.approx((130, 80)) and out[1] == pytest.approx((130, 140, 12))
    assert out[2] == pytest.approx((190, 80, -6))


def _project(yaw, pitch, roll, size=(640, 480), scale=100.0, t=(20.0, -10.0, 900.0)):
    w, h = size
    f = max(w, h)
    p = CANONICAL_POINTS * scale @ euler_to_matrix(yaw, pitch, roll).T + np.array(t)
    uv = p[:, :2] / p[:, 2:] * f + (w / 2, h / 2)
    pts = np.zeros((468, 3))
    pts[list(POSE_INDICES), :2] = uv
    return pts


@pytest.mark.parametrize(
    "angles", [(0, 0, 0), (20, 0, 0), (-25, 10, 0), (0, -15, 0), (0, 0, 30), (15, -10, -20), (-30, 20, 10)]
)
def test_head_pose_recovers_known_rotations(angles):
    pose = head_pose(_project(*angles), (640, 480))
    assert set(pose) == {"yaw", "pitch", "roll"}
    got = np.array([pose["yaw"], pose["pitch"], pose["roll"]])
    assert np.abs(got - np.array(angles, float)).max() < 2.0, (angles, pose)


def test_head_pose_signs_and_errors():
    # yaw > 0: the face turns to the image's left, so the nose moves left of the eye-corner midpoint
    pts = _project(20, 0, 0)
    assert pts[1, 0] < (pts[33, 0] + pts[263, 0]) / 2
    pts = _project(0, 0, 20)  # roll > 0: clockwise, the subject's left eye (image right) drops
    assert pts[263, 1] > pts[33, 1]
    with pytest.raises(ModelError, match="468"):
        head_pose(np.zeros((68, 2)), (640, 480))


def test_head_pose_with_noisy_points_stays_upright():
    # 1 px noise on a face ~100 px wide: a blind solvePnP start often lands on the mirrored pose (roll ~ 180)
    rng = np.random.default_rng(0)
    for angles in [(0, 0, 0), (10, -5, 3), (-20, 8, -6)]:
        for _ in range(5):
            pts = _project(*angles)
            pts[list(POSE_INDICES), :2] += rng.normal(0, 1.0, (6, 2))
            pose = head_pose(pts, (640, 480))
            got = np.array([pose["yaw"], pose["pitch"], pose["roll"]])
            assert np.abs(got - np.array(angles, float)).max() < 8.0, (angles, pose)


def test_analyze_with_full_landmarks(tmp_path):
    from emovid.analyze import AnalyzeOptions, analyze_video
    from emovid.data.synth import render_video, sample_latent
    from emovid.errors import ConfigError

    video = tmp_path / "talk.mp4"
    render_video(sample_latent(0, 1), video, size=128, fps=5, seconds=1)
    res = analyze_video(video, detector="blazeface", landmarks="full", progress=False)
    faces = [f for fr in res.result["frames"] for f in fr["faces"]]
    assert faces, "the synthetic talker was not found"
    for f in faces:
        assert len(f["landmarks"]) == 468 and all(len(p) == 3 for p in f["landmarks"])
        assert set(f["pose"]) == {"yaw", "pitch", "roll"}
        x, y, w, h = f["box"]
        nose = f["landmarks"][1]
        assert x - w / 2 < nose[0] < x + 1.5 * w and y - h / 2 < nose[1] < y + 1.5 * h
    cols = res.columns()
    assert "yaw" in cols and "lm467_x" in cols
    with pytest.raises(ConfigError, match="--landmarks"):
        AnalyzeOptions(landmarks="dense")


def test_cli_landmarks_full_writes_mesh_and_pose(tmp_path, capsys):
    import csv
    import json

    from emovid.cli import main
    from emovid.data.synth import render_video, sample_latent

    video = tmp_path / "talk.mp4"
    render_video(sample_latent(0, 1), video, size=128, fps=5, seconds=1)
    out = tmp_path / "o"
    argv = ["analyze", str(video), "-o", str(out), "--detector", "blazeface", "--landmarks", "full", "--no-progress"]
    assert main(argv) == 0
    faces = [f for fr in json.loads((out / "talk.json").read_text())["frames"] for f in fr["faces"]]
    assert faces and all(len(f["landmarks"]) == 468 and "pose" in f for f in faces)
    with open(out / "talk.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["face"] != ""]
    assert rows and rows[0]["yaw"] != "" and rows[0]["lm467_y"] != ""
    assert main([*argv[:-3], "--landmarks", "dense"]) == 1
    assert "--landmarks" in capsys.readouterr().err
