"""BlazeFace (MediaPipe short and full range) in PyTorch: the ports against the TFLite models' outputs, the decoding.

``tests/fixtures/blazeface_short_ref.npz`` holds two 128x128 RGB images (uniform noise, a synthetic face drawing)
and the raw ``regressors`` / ``classificators`` of ``face_detection_short_range.tflite`` run on them by
``ai-edge-litert`` (built-in kernels, no XNNPACK); ``tests/fixtures/blazeface_full_ref.npz`` the same for
``face_detection_full_range.tflite`` on two 192x192 images (blocky noise, the bundled astronaut photo letterboxed):
all logits, the regressors of every third anchor and of the 32 best scored ones, and every anchor's regressor sum.
``tools/convert_blazeface.py`` made them together with the bundled weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from emovid.cli import main
from emovid.errors import ConfigError
from emovid.faces import create_detector
from emovid.faces.blazeface import BlazeFaceDetector, decode, letterbox, ssd_anchors, weighted_nms

FIXTURE = Path(__file__).parent / "fixtures" / "blazeface_short_ref.npz"
FULL_FIXTURE = Path(__file__).parent / "fixtures" / "blazeface_full_ref.npz"
ASTRONAUT_BOX = (111, 42, 59, 59)  # hand-set face box of emovid/assets/astronaut.jpg (assets README)


@pytest.fixture(scope="module")
def det():
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def det_full():
    return BlazeFaceDetector(model="full")


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _rgb(name):
    import cv2

    from emovid.demo import asset_path

    return cv2.cvtColor(cv2.imread(str(asset_path(name))), cv2.COLOR_BGR2RGB)


def test_port_matches_tflite_outputs(det):
    ref = np.load(FIXTURE)
    reg, logits = det.raw(ref["images"])
    assert reg.shape == (2, 896, 16) and logits.shape == (2, 896)
    assert np.abs(reg - ref["regressors"]).max() <= 1e-4
    assert np.abs(logits - ref["classificators"][..., 0]).max() <= 1e-4


def test_synthetic_face_drawing_is_found(det):
    images = np.load(FIXTURE)["images"]
    assert det.detect(images[0]) == []  # noise
    faces = det.detect_batch([images[1], images[0]])
    assert [len(f) for f in faces] == [1, 0]
    f = faces[0][0]
    x, y, w, h = f.box
    assert f.kind == "blazeface" and 0.5 < f.score < 1 and len(f.landmarks) == 12
    assert abs(x + w / 2 - 64) < 12 and abs(y + h / 2 - 64) < 16 and 30 < w < 90  # the drawn face: 60x80 at centre
    assert f.landmarks[0] < f.landmarks[2]  # the subject's right eye is on the image's left


def test_full_range_port_matches_tflite_outputs(det_full):
    import torch

    ref = np.load(FULL_FIXTURE)
    idx = ref["reg_index"].astype(np.int64)[..., None]

    def check(reg, logits, tol_reg):
        assert reg.shape == (2, 2304, 16) and logits.shape == (2, 2304)
        assert np.abs(logits - ref["classificators"][..., 0]).max() <= 1e-4
        assert np.abs(np.take_along_axis(reg, idx, 1) - ref["regressors"]).max() <= tol_reg
        assert np.abs(reg.astype(np.float64).sum(-1) - ref["regressor_sums"]).max() <= 16 * tol_reg  # all anchors

    # The port's arithmetic in float64: what is left is TFLite's own float32 rounding (measured 6.7e-5 on
    # regressors up to ~93, 4.8e-6 on logits).
    net = copy.deepcopy(det_full._net).double()
    x = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).double() / 127.5 - 1.0
    with torch.no_grad():
        reg, logits = net(x)
    check(reg.numpy(), logits.numpy()[..., 0], 1e-4)
    # float32 as the detector runs it: oneDNN's float32 sums (their order depends on the CPU and the batch size) add
    # their own rounding, up to ~1.5e-4 from float64 here; measured up to 1.1e-4 from TFLite at a regressor of 68,
    # i.e. 1.6e-6 relative, logits 7e-6. The bound leaves room for other CPUs; a wrong weight or wire is >> 1e-2.
    check(*det_full.raw(ref["images"]), 5e-4)


def test_full_range_finds_faces(det, det_full):
    import cv2

    photo = _rgb("astronaut.jpg")
    (face,) = det_full.detect(photo)
    assert face.kind == "blazeface" and 0.6 <= face.score < 1 and len(face.landmarks) == 12
    assert _iou(face.box, ASTRONAUT_BOX) > 0.6
    assert face.landmarks[0] < face.landmarks[2]  # the subject's right eye is on the image's left
    # A small face in a wide frame: the photo's face at 107 px in a 1280x720 grey frame (1/12 of its width) is
    # 11 px in the short-range model's 128 px letterbox (missed) and 16 px in the full-range model's 192 px one.
    crop = photo[12:132, 80:200]  # 120 px around the face box, the face 59 px
    side = round(120 * 107 / 59)
    wide = np.full((720, 1280, 3), 90, np.uint8)
    wide[300 : 300 + side, 800 : 800 + side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
    gt = (800 + 31 * side / 120, 300 + 30 * side / 120, 107, 107)
    blank = np.zeros((720, 1280, 3), np.uint8)
    found = det_full.detect_batch([wide, blank, photo])
    assert [len(f) for f in found] == [1, 0, 1]
    assert _iou(found[0][0].box, gt) > 0.6 and found[0][0].score >= 0.6
    assert found[2][0].box == pytest.approx(face.box, abs=0.05)  # batched = one by one
    assert det.detect(wide) == []  # the short-range model misses it


def test_anchors():
    a = ssd_anchors()
    assert a.shape == (896, 2)
    assert a[0] == pytest.approx((1 / 32, 1 / 32)) and a[1] == pytest.approx((1 / 32, 1 / 32))  # 2 per 16x16 cell
    assert a[2] == pytest.approx((3 / 32, 1 / 32)) and a[32] == pytest.approx((1 / 32, 3 / 32))
    assert np.allclose(a[512:518], 1 / 16) and a[518] == pytest.approx((3 / 16, 1 / 16))  # 6 per 8x8 cell
    assert a[-1] == pytest.approx((15 / 16, 15 / 16))
    f = ssd_anchors(192, (4,), 1)  # full range: one anchor per cell of the 48x48 grid
    assert f.shape == (2304, 2) and f[0] == pytest.approx((1 / 96, 1 / 96))
    assert f[1] == pytest.approx((3 / 96, 1 / 96)) and f[48] == pytest.approx((1 / 96, 3 / 96))
    assert f[-1] == pytest.approx((95 / 96, 95 / 96))


def test_decode():
    reg = np.zeros((3, 16))
    reg[0, :4] = (12.8, -6.4, 25.6, 38.4)
    reg[0, 4:6] = (-12.8, 64.0)
    anchors = np.array([[0.5, 0.5], [0.25, 0.75], [0.0, 0.0]])
    boxes, scores, pts = decode(reg, np.array([0.0, 1000.0, -1000.0]), anchors)
    assert boxes[0] == pytest.approx((0.5, 0.3, 0.7, 0.6))  # centre (0.6, 0.45), 0.2 x 0.3
    assert pts[0, 0] == pytest.approx((0.4, 1.0)) and pts[0, 5] == pytest.approx((0.5, 0.5))
    assert boxes[1] == pytest.approx((0.25, 0.75, 0.25, 0.75))
    assert scores == pytest.approx([0.5, 1 / (1 + np.exp(-100)), 1 / (1 + np.exp(100))], rel=1e-9, abs=0)


def test_weighted_nms():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # A 0.9
            [1, 0, 11, 10],  # B 0.6: IoU(A, B) = 90 / 110, merged into A
            [20, 20, 30, 30],  # C 0.7
            [26, 20, 36, 30],  # D 0.8: IoU(C, D) = 40 / 160 = 0.25, kept apart
            [5, 0, 15, 10],  # E 0.3: IoU(A, E) = 50 / 150 > 0.3, merged into A
        ],
        float,
    )
    scores = np.array([0.9, 0.6, 0.7, 0.8, 0.3])
    kps = np.arange(5 * 2 * 2, dtype=float).reshape(5, 2, 2)
    out = weighted_nms(boxes, scores, kps, 0.3)
    assert [s for _, s, _ in out] == [0.9, 0.8, 0.7]
    w = np.array([0.9, 0.6, 0.3])
    want = (boxes[[0, 1, 4]] * w[:, None]).sum(0) / w.sum()  # = (1.5 / 1.8 ..): x0 = (0.6 + 1.5) / 1.8
    assert out[0][0] == pytest.approx(want) and out[0][0][0] == pytest.approx(2.1 / 1.8)
    assert out[0][2] == pytest.approx((kps[[0, 1, 4]] * w[:, None, None]).sum(0) / w.sum())
    assert out[1][0] == pytest.approx(boxes[3]) and out[2][0] == pytest.approx(boxes[2])
    assert weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2))) == []


def test_letterbox_and_mapping_back(det, monkeypatch):
    frame = np.full((100, 200, 3), 200, np.uint8)  # 200 x 100 -> 128 x 64 at scale 0.64, 32 black rows above
    img, geom = letterbox(frame)
    assert img.shape == (128, 128, 3) and geom == pytest.approx((0.0, 32.0, 0.64, 0.64))
    assert (img[:32] == 0).all() and (img[96:] == 0).all() and (img[32:96] == 200).all()

    def fake_raw(images):
        n = len(images)
        reg = np.zeros((n, 896, 16), np.float32)
        logits = np.full((n, 896), -10.0, np.float32)
        i = (8 * 16 + 8) * 2  # stride-8 cell (8, 8): anchor centre (68, 68) in the 128 px input
        reg[:, i, 2:4] = 32.0  # a 32 x 32 box on the anchor
        reg[:, i, 4:6] = (6.4, -12.8)  # first key point
        logits[:, i] = 3.0
        return reg, logits

    monkeypatch.setattr(det, "raw", fake_raw)
    wide, tall = det.detect_batch([frame, np.zeros((256, 128), np.uint8)])  # grey frames are accepted
    assert len(wide) == 1 and wide[0].score == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-4)
    # letterbox (52, 52, 32, 32) -> frame: x / 0.64, (y - 32) / 0.64
    assert wide[0].box == pytest.approx((81.25, 31.25, 50.0, 50.0))
    assert wide[0].landmarks[:2] == pytest.approx((116.25, 36.25), abs=0.01)
    # 128 x 256 -> 64 x 128 at scale 0.5, 32 black columns on the left
    assert tall[0].box == pytest.approx((40.0, 104.0, 64.0, 64.0))


def test_presets_and_options():
    assert isinstance(create_detector("blazeface", redetect_every=5), BlazeFaceDetector)
    with pytest.raises(ConfigError, match="unknown face detector"):
        create_detector("blazeface:weights.bin")
    with pytest.raises(ConfigError, match="score_threshold"):
        BlazeFaceDetector(score_threshold=1.5)
    full = create_detector("blazeface-full")
    assert isinstance(full, BlazeFaceDetector) and full.model == "full" and full.name == "blazeface-full"
    assert full.score_threshold == 0.6 and BlazeFaceDetector().score_threshold == 0.5  # MediaPipe's graphs
    with pytest.raises(ConfigError, match="unknown BlazeFace model"):
        BlazeFaceDetector(model="mid")


def test_analyze_video_with_blazeface(tmp_path):
    from emovid.data.synth import render_video, sample_latent

    video = tmp_path / "talk.mp4"
    render_video(sample_latent(0, 1), video, size=128, fps=5, seconds=1)
    out = tmp_path / "out"
    assert main(["analyze", str(video), "-o", str(out), "--detector", "blazeface", "--no-progress"]) == 0
    res = json.loads((out / "talk.json").read_text())
    assert res["detector"] == "blazeface" and len(res["frames"]) >= 1
    for fr in res["frames"]:
        for face in fr["faces"]:
            assert len(face["box"]) == 4 and 0.5 <= face["score"] <= 1 and len(face["landmarks"]) == 6
