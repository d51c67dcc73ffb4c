"""YuNet through ``cv2.FaceDetectorYN``, on a stand-in ONNX file in YuNet's official output layout.

The real ``face_detection_yunet_2023mar.onnx`` cannot be downloaded here, so the fixture exports a small graph with
the same input (``[1, 3, H, W]`` BGR, 0-255) and the same twelve outputs OpenCV reads by name (``cls_8``, ...,
``kps_32``, each ``[1, cells, C]``). Its "face score" in a stride-s cell is the mean of the *blue* channel over the
cell / 255, its boxes are 4 cells wide and centred in the cell, its landmarks sit at the cell's corner. A pure blue
8x8 square therefore gives exactly one face (stride 8) with a known box, which checks OpenCV's decoding, our
RGB -> BGR conversion and the mapping back from a downscaled frame.
"""

from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emovid.cli import main
from emovid.errors import ConfigError, ModelError, WeightsUnavailableError
from emovid.faces import create_detector
from emovid.faces.yunet import YuNetFaceDetector

OUTPUTS = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]


class _BlueSquares(torch.nn.Module):
    def forward(self, x):
        cls, bbox, kps = [], [], []
        for s in (8, 16, 32):
            score = (F.avg_pool2d(x[:, :1], s) / 255.0).flatten(2).transpose(1, 2)  # [1, cells, 1]
            z = score * 0
            cls.append(score)
            bbox.append(torch.cat([z + 0.5, z + 0.5, z + math.log(4), z + math.log(4)], -1))
            kps.append(torch.cat([z] * 10, -1))
        return (*cls, *cls, *bbox, *kps)


@pytest.fixture(scope="module")
def yunet_onnx(tmp_path_factory):
    pytest.importorskip("onnx")  # a dev dependency; the exporter needs it
    path = tmp_path_factory.mktemp("yunet") / "yunet_stand_in.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _BlueSquares(),
            torch.zeros(1, 3, 320, 320),
            str(path),
            input_names=["input"],
            output_names=OUTPUTS,
            dynamo=False,
            opset_version=13,
        )
    return str(path)


def _frame(h, w, y, x, colour, side=8):
    img = np.zeros((h, w, 3), np.uint8)
    img[y : y + side, x : x + side] = colour
    return img


def test_boxes_scores_landmarks_and_channel_order(yunet_onnx):
    det = create_detector(f"yunet:{yunet_onnx}", redetect_every=5)  # one pass per frame: not wrapped in tracking
    assert isinstance(det, YuNetFaceDetector) and not det.grey_input
    # blue square in RGB covering the stride-8 cell (row 10, col 20): centre (164, 84), 4 cells = 32 px wide
    faces = det.detect(_frame(320, 320, 80, 160, (0, 0, 255)))
    assert len(faces) == 1
    f = faces[0]
    assert f.box == pytest.approx((148.0, 68.0, 32.0, 32.0)) and f.score == pytest.approx(1.0) and f.kind == "yunet"
    assert f.landmarks == pytest.approx((160.0, 80.0) * 5)
    assert det.detect(_frame(320, 320, 80, 160, (255, 0, 0))) == []  # red: the model saw BGR, as OpenCV feeds it
    assert det.detect(np.zeros((320, 320), np.uint8)) == []  # grey frames are accepted


def test_large_frames_are_downscaled_and_boxes_mapped_back(yunet_onnx):
    det = YuNetFaceDetector(weights=yunet_onnx, max_side=320)
    # 640x480 frame -> 320x240 for detection: a 16 px blue square at (y=160, x=320) is one stride-8 cell there
    faces = det.detect(_frame(480, 640, 160, 320, (0, 0, 255), side=16))
    assert len(faces) == 1
    assert faces[0].box == pytest.approx((296.0, 136.0, 64.0, 64.0))  # (148, 68, 32, 32) at half size, x2
    # the input size follows the frame size from call to call
    assert det.detect(_frame(320, 320, 80, 160, (0, 0, 255)))[0].box == pytest.approx((148.0, 68.0, 32.0, 32.0))
    assert YuNetFaceDetector(weights=yunet_onnx, min_size_px=40).detect(_frame(320, 320, 80, 160, (0, 0, 255))) == []


def test_missing_weights_bad_files_and_bad_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError, match="face_detection_yunet_2023mar.onnx"):
        create_detector("yunet")  # offline and not cached: says which file, and how to get it
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a YuNet ONNX model"):
        create_detector(f"yunet:{bad}")
    with pytest.raises(ConfigError, match="unknown face detector"):
        create_detector("haar:whatever")
    with pytest.raises(ConfigError, match="score_threshold"):
        YuNetFaceDetector(weights=str(bad), score_threshold=1.5)


def test_analyze_with_yunet(yunet_onnx, tmp_path, capsys):
    img = tmp_path / "blue.png"
    cv2.imwrite(str(img), _frame(320, 320, 80, 160, (255, 0, 0)))  # BGR on disk: a blue square
    out = tmp_path / "out"
    assert main(["analyze", str(img), "-o", str(out), "--detector", f"yunet:{yunet_onnx}", "--no-progress"]) == 0
    res = json.loads((out / "blue.json").read_text())
    face = res["frames"][0]["faces"][0]
    assert res["detector"] == "yunet" and face["box"] == [148, 68, 32, 32]
    assert face["landmarks"] == [[160.0, 80.0]] * 5
    capsys.readouterr()
    assert main(["analyze", str(img), "-o", str(out), "--detector", "yunet", "--overwrite", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "face_detection_yunet_2023mar.onnx" in err and "Traceback" not in err
