"""emovid.faces: detection, tracking, crops, and `emovid faces embed`."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from emovid.cli import main
from emovid.data.synth import background, render_frame, render_video, sample_latent, trajectories
from emovid.demo import asset_path
from emovid.errors import ConfigError
from emovid.faces import (
    Face,
    IoUTracker,
    Track,
    create_detector,
    crop_square,
    iou_matrix,
    main_track,
    nms,
    square_box,
    video_face_crops,
)
from emovid.video import uniform_indices, write_video


def _synth(i: int, size: int = 160, k: int = 0):
    lat = sample_latent(7, i)
    traj = trajectories(lat, 45, 15)
    u = 0.28 * size * lat.scale
    cx = size / 2 + (lat.dx + float(traj["offset_x"][k])) * size
    cy = size / 2 + 0.03 * size + (lat.dy + float(traj["offset_y"][k])) * size
    return render_frame(lat, traj, k, size, background(lat, size)), (cx - u, cy - 1.3 * u, 2 * u, 2.6 * u)


def _inside(box, gt) -> bool:
    x, y, w, h = box
    gx, gy, gw, gh = gt
    return gx <= x + w / 2 <= gx + gw and gy <= y + h / 2 <= gy + gh and 0.4 * gw <= w <= 1.6 * gw


# ---- detection --------------------------------------------------------------------------------------------------


def test_detector_finds_synthetic_faces_and_nothing_on_blank_frames():
    det = create_detector("haar")
    frames = [_synth(i, k=k) for i in range(8) for k in (0, 30)]
    hits = sum(any(_inside(f.box, gt) for f in det.detect(img)) for img, gt in frames)
    assert hits / len(frames) >= 0.75  # bench/analyze.py measures ~0.9 on 480 frames
    assert det.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    ramp = np.broadcast_to(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 320, 3)).copy()
    assert det.detect(ramp) == []


@pytest.mark.parametrize("preset", ["haar", "haar-fer"])
def test_tracking_detector_gives_the_full_search_boxes_with_fewer_full_searches(preset):
    from emovid.faces.detect import TrackingDetector

    lat = sample_latent(7, 2)
    traj = trajectories(lat, 45, 15)
    frames = []
    for k in range(0, 45, 3):  # the face moves and changes expression; a blank gap in the middle
        img = np.full((240, 320, 3), 90, np.uint8)
        if not 18 <= k < 24:
            img[40:200, 60 + 2 * k : 220 + 2 * k] = render_frame(lat, traj, k, 160)
        frames.append(img)
    full = create_detector(preset)
    tracked = create_detector(preset, redetect_every=5)
    assert isinstance(tracked, TrackingDetector) and tracked.name == f"{preset}+track5"
    calls = []
    base_detect = tracked.base.detect
    tracked.base.detect = lambda img: calls.append(1) or base_detect(img)
    for img in frames:
        a, b = full.detect(img), tracked.detect(img)
        assert [f.box for f in a] == [f.box for f in b]  # the size band reproduces the full search exactly
    n = len(calls)
    assert n < len(frames) - 4
    tracked.reset()
    tracked.detect(frames[0])
    assert len(calls) == n + 1  # after reset: a full search first
    with pytest.raises(ConfigError, match="redetect_every"):
        create_detector("haar", redetect_every=0)


def test_detector_finds_the_real_faces_in_the_bundled_photos():
    img = cv2.cvtColor(cv2.imread(str(asset_path("astronaut.jpg"))), cv2.COLOR_BGR2RGB)
    faces = create_detector("haar").detect(img)
    assert len(faces) == 1 and 0 < faces[0].score <= 1
    assert iou_matrix([faces[0].box], [(111, 42, 59, 59)])[0, 0] > 0.7
    # Scaled up 2x: boxes come back in the input's pixels although detection runs on a 640-px copy.
    big = cv2.resize(img, (640 * 2, 640 * 2))
    (f2,) = create_detector("haar").detect(big)
    assert iou_matrix([f2.box], [tuple(4 * v for v in (111, 42, 59, 59))])[0, 0] > 0.6
    # The camera man's three-quarter face is found by the profile cascade on the mirrored, unequalised image.
    cam = cv2.cvtColor(cv2.imread(str(asset_path("camera.jpg"))), cv2.COLOR_BGR2RGB)
    assert create_detector("haar-frontal").detect(cam) == []
    profile = create_detector("haar", equalize=False).detect(cam)
    assert [f.kind for f in profile] == ["profile"] and _inside(profile[0].box, (113, 64, 56, 60))


def test_unknown_detector_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown face detector 'yolo'"):
        create_detector("yolo")


def test_iou_and_nms_exact():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0, 1.0]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [30, 30, 10, 10], [2, 2, 4, 4]])
    scores = np.array([0.5, 0.9, 0.4, 0.95])
    # 3 (best) is kept; 1 holds 3 inside it (containment 1.0) -> dropped; 0 overlaps 3 by containment -> dropped.
    assert nms(boxes, scores) == [3, 2]
    assert nms(boxes, scores, contain_threshold=1.1) == [3, 1, 2]


# ---- tracking ---------------------------------------------------------------------------------------------------


def test_tracker_keeps_ids_smooths_and_splits_after_a_long_gap():
    trk = IoUTracker(iou_threshold=0.3, max_gap=2, smoothing=0.5)
    a = lambda x: Face((x, 10.0, 40.0, 40.0), 0.9)  # noqa: E731
    far = Face((300.0, 200.0, 30.0, 30.0), 0.8)
    out0 = trk.update(0, 0.0, [a(0), far])
    out1 = trk.update(1, 0.2, [far, a(8)])  # input order swapped: ids follow the boxes
    assert [i for i, _ in out0] == [0, 1] and [i for i, _ in out1] == [1, 0]
    assert out1[1][1] == pytest.approx((4.0, 10.0, 40.0, 40.0))  # EMA: 0.5 * 8 + 0.5 * 0
    # Moved 14 px right and down from the smoothed box: IoU 0.27 < 0.3, but the centre is 19.8 px away, within
    # half a face side (20 px): still the same face.
    moved = Face((18.0, 24.0, 40.0, 40.0), 0.9)
    assert iou_matrix([moved.box], [(4.0, 10.0, 40.0, 40.0)])[0, 0] < 0.3
    assert trk.update(2, 0.4, [moved])[0][0] == 0
    # Missing for 2 samples (= max_gap) continues; missing for 3 starts a new track.
    assert trk.update(5, 1.0, [moved])[0][0] == 0
    assert trk.update(9, 1.8, [moved])[0][0] == 2
    tracks = trk.tracks
    assert [t.id for t in tracks] == [0, 1, 2] and [len(t) for t in tracks] == [4, 2, 1]
    assert tracks[0].box_at(3) is None and tracks[0].box_at(5, smoothed=False) == (18.0, 24.0, 40.0, 40.0)
    assert trk.num_tracks == 3 and main_track(tracks).id == 0


def test_assignment_is_the_hungarian_optimum():
    from scipy.optimize import linear_sum_assignment

    from emovid.faces.track import _assignment

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 4), (4, 1), (3, 3), (2, 5), (5, 2)]:
        for _ in range(5):
            sim = rng.random(shape)
            pairs = _assignment(sim)
            rows, cols = linear_sum_assignment(-sim)
            assert len(pairs) == min(shape) and len({r for r, _ in pairs}) == len({c for _, c in pairs}) == min(shape)
            assert sum(sim[r, c] for r, c in pairs) == pytest.approx(sim[rows, cols].sum())


def test_haar_detectors_take_the_grey_frame():
    img = cv2.cvtColor(cv2.imread(str(asset_path("astronaut.jpg"))), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    for det in (create_detector("haar"), create_detector("haar-fer", redetect_every=3)):
        assert det.grey_input
        boxes = [f.box for f in det.detect(img)]
        assert boxes and [f.box for f in det.detect(grey)] == boxes


def test_main_track_prefers_longest_then_largest():
    t1 = Track(0, steps=[0, 1], boxes=[(0, 0, 10, 10)] * 2)
    t2 = Track(1, steps=[0, 1], boxes=[(0, 0, 20, 20)] * 2)
    t3 = Track(2, steps=[0, 1, 2], boxes=[(0, 0, 5, 5)] * 3)
    assert main_track([t1, t2]).id == 1
    assert main_track([t1, t2, t3]).id == 2
    assert main_track([]) is None


# ---- crops ------------------------------------------------------------------------------------------------------


def test_square_box_and_fer_geometry():
    assert square_box((10, 20, 30, 50), margin=0.0) == (0, 20, 50)
    assert square_box((10, 20, 40, 40), margin=0.25) == (0, 10, 60)
    # fer: tosquare (shorter side grown, x -= diff // 2) then 10-pixel offsets on every side.
    x, y, w, h = 17, 9, 31, 36
    diff = h - w
    assert square_box((x, y, w, h), margin=0.0, margin_px=10) == (x - diff // 2 - 10, y - 10, h + 20)


def test_crop_square_pads_outside_with_bottom_mean():
    img = np.zeros((20, 20), np.uint8)
    img[-2:] = 100
    img[5:10, 5:10] = 255
    c = crop_square(img, (0, 0, 10, 10), size=None, margin=0.0, margin_px=5)
    assert c.shape == (20, 20)
    assert (c[:5] == 100).all() and (c[:, :5] == 100).all()  # outside the frame: mean of the bottom rows
    assert (c[10:15, 10:15] == 255).all()  # the image content lands at its offset
    rgb = np.dstack([img, img // 2, img // 4])
    assert crop_square(rgb, (2, 2, 8, 8), size=32).shape == (32, 32, 3)


def test_video_face_crops_marks_frames_without_face(tmp_path):
    lat = sample_latent(0, 1)
    traj = trajectories(lat, 20, 10)
    bg = background(lat, 128)
    frames = [render_frame(lat, traj, k, 128, bg) for k in range(20)] + [bg.copy() for _ in range(20)]
    path = write_video(tmp_path / "half.mp4", frames, fps=10, crf=16)
    fc = video_face_crops(path, num_crops=10, size=48)
    assert fc.crops.shape == (10, 48, 48, 3)
    assert fc.frame_indices.tolist() == uniform_indices(40, 10)
    assert not fc.has_face[5:].any()  # the face-free second half is marked, not filled in
    assert fc.has_face[:5].sum() >= 4
    assert (fc.crops[~fc.has_face] == 0).all() and np.isnan(fc.boxes[~fc.has_face]).all()
    assert fc.length == int(fc.has_face.sum()) and fc.num_tracks == 1
    assert fc.face_crops().shape == (fc.length, 48, 48, 3)
    np.testing.assert_allclose(fc.times, np.asarray(fc.frame_indices) / 10, atol=1e-6)


# ---- emovid faces embed ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fiv2_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fiv2")
    (root / "training80_01").mkdir()
    (root / "training80_02").mkdir()
    render_video(sample_latent(0, 1), root / "training80_01" / "vid1.000.mp4", size=112, fps=10, seconds=2)
    render_video(sample_latent(0, 6), root / "training80_02" / "vid2.000.mp4", size=112, fps=10, seconds=2)
    write_video(root / "training80_02" / "blank.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 10, fps=10)
    (root / "training80_02" / "broken.mp4").write_bytes(b"\x00not a video")
    return root


def test_faces_embed_layout_resume_and_failures(fiv2_tree, tmp_path, capsys):
    out = tmp_path / "emb"
    args = ["faces", "embed", "--split", "train", "--base_path", str(fiv2_tree), "--output_root", str(out)]
    args += ["--folders", "training80_01", "training80_02", "--model", "test_emonext", "--num-crops", "8"]
    assert main([*args, "--no-progress"]) == 1  # one corrupt video
    cap = capsys.readouterr()
    assert "broken.mp4: cannot be opened as a video" in cap.err and len(cap.err.strip().splitlines()) == 1
    assert "3 done, 0 skipped, 1 failed of 4 videos (1 without any face; test_emonext, dim 64)" in cap.out
    files = sorted(p.name for p in (out / "train").iterdir())
    assert files == ["blank.pt", "faces_embed.json", "failures.jsonl", "manifest.jsonl", "vid1.000.pt", "vid2.000.pt"]
    (fail,) = [json.loads(line) for line in (out / "train" / "failures.jsonl").read_text().splitlines()]
    assert fail["video"].endswith("broken.mp4")
    d = torch.load(out / "train" / "vid1.000.pt", weights_only=True)
    assert d["emb"].shape == (8, 64) and d["emb"].dtype == torch.float32
    n = d["length"]
    assert 6 <= n <= 8
    assert (d["emb"][:n].abs().sum(1) > 0).all() and (d["emb"][n:] == 0).all()
    assert (d["frames"][n:] == -1).all() and torch.isnan(d["times"][n:]).all()
    assert set(d["frames"][:n].tolist()) <= set(uniform_indices(20, 8))
    blank = torch.load(out / "train" / "blank.pt", weights_only=True)
    assert blank["length"] == 0 and (blank["emb"] == 0).all()
    # Resume: existing outputs are skipped (files untouched), the broken one is retried.
    mtime = (out / "train" / "vid1.000.pt").stat().st_mtime_ns
    dash = ["faces", "embed", "--split", "train", "--base-path", str(fiv2_tree), "--output-root", str(out)]
    dash += ["--folders", "training80_01,training80_02", "--model", "test_emonext", "--no-progress"]
    assert main([*dash, "--num-crops", "8"]) == 1
    assert "0 done, 3 skipped, 1 failed" in capsys.readouterr().out
    # Other settings would mix two kinds of files in one folder: refused, nothing touched.
    assert main(dash) == 1
    assert "num_crops=8" in capsys.readouterr().err
    assert (out / "train" / "vid1.000.pt").stat().st_mtime_ns == mtime


def test_faces_embed_errors_are_one_line(tmp_path, capsys):
    base = ["faces", "embed", "--split", "train", "--output_root", str(tmp_path / "o")]
    assert main([*base, "--base_path", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"emovid: error: {tmp_path / 'missing'}: no such folder; check the path"
    (tmp_path / "d").mkdir()
    assert main([*base, "--base_path", str(tmp_path / "d"), "--folders", "nope"]) == 1
    assert "no such folder (from --folders)" in capsys.readouterr().err
    assert main([*base, "--base_path", str(tmp_path / "d"), "stray"]) == 1
    assert "unexpected argument(s) stray" in capsys.readouterr().err


def test_embed_uses_math_on_real_rows_only():
    # Guard the padding contract the sequence heads rely on: padding rows are exactly zero, real rows are not.
    from emovid.faces.embed import FaceEmbedder

    emb = FaceEmbedder("test_emonext", pretrained=None)
    crops = np.random.default_rng(0).integers(0, 255, (3, 40, 40, 3), dtype=np.uint8)
    e = emb.embed(crops)
    assert e.shape == (3, emb.dim) and math.isfinite(float(np.abs(e).sum())) and (np.abs(e).sum(1) > 0).all()
