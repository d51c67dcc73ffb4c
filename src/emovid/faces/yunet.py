"""YuNet: an optional CNN face detector run by OpenCV's own ``cv2.FaceDetectorYN`` (no extra Python package).

YuNet (Wu, Peng & Yu, "YuNet: A Tiny Millisecond-level Face Detector", Machine Intelligence Research 2023; MIT
licence, OpenCV Zoo) is a 75 k-parameter anchor-free detector with five landmarks per face. OpenCV Zoo's model card
gives WIDER Face validation AP 0.834 easy / 0.824 medium / 0.708 hard for ``face_detection_yunet_2023mar.onnx`` (not
re-measured here: the weights cannot be downloaded on the build machines). It finds faces of roughly 10 to 300
pixels, so frames whose longer side exceeds ``max_side`` are downscaled first (this also bounds the cost on HD
video).

The weights are a 233 KB ONNX file that is **not** shipped with emovid: ``--detector yunet`` fetches
``face_detection_yunet_2023mar.onnx`` from the Hugging Face repo ``opencv/face_detection_yunet`` into the hub cache
on first use; offline, the error names the file and how to get it. ``--detector yunet:PATH`` uses a local copy
(any YuNet ONNX export with OpenCV's output names: ``cls_8 ... kps_32``).

Boxes and scores: ``cv2.FaceDetectorYN`` decodes the three stride heads (score = ``sqrt(cls * obj)``, a confidence
in ``[0, 1]``), keeps faces above ``score_threshold`` and applies NMS; ``Face.landmarks`` holds the right eye, left
eye, nose tip and mouth corners as ``(x, y)`` pairs in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emovid.errors import ConfigError, ModelError, WeightsUnavailableError
from emovid.faces.detect import Face, FaceDetector
from emovid.models.registry import PretrainedCfg, WeightSource

__all__ = ["YUNET_WEIGHTS", "YuNetFaceDetector"]

#: Published YuNet weights by tag (resolved like model weights: cache, hub download, or an offline error).
YUNET_WEIGHTS = PretrainedCfg(
    weights={
        "2023mar": WeightSource(
            hf_hub_id="opencv/face_detection_yunet",
            hf_filename="face_detection_yunet_2023mar.onnx",
            license="MIT",
            description="YuNet v2 (OpenCV Zoo), fixed 640x640 export that OpenCV 4.x reshapes to the frame",
        )
    },
    default_tag="2023mar",
    license="MIT",
    source="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
)


@dataclass
class YuNetFaceDetector(FaceDetector):
    """Faces found by YuNet through ``cv2.FaceDetectorYN`` (see the module notes).

    Args:
        weights: a tag of :data:`YUNET_WEIGHTS` (default ``2023mar``), a local ``.onnx`` path, a URL or
            ``hf-hub:REPO/FILE``.
        score_threshold: smallest face score kept (OpenCV Zoo's demo uses 0.9).
        nms_threshold: IoU above which the weaker of two boxes is dropped.
        top_k: candidates kept before NMS.
        max_side: frames whose longer side exceeds this are downscaled for detection (boxes are mapped back);
            ``None`` or 0 detects at full resolution.
        min_size_px: faces smaller than this (frame pixels) are dropped.
    """

    weights: str = "2023mar"
    score_threshold: float = 0.9
    nms_threshold: float = 0.3
    top_k: int = 5000
    max_side: int | None = 640
    min_size_px: int = 0
    name: str = "yunet"
    _net: object = field(default=None, init=False, repr=False)
    _size: tuple[int, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import cv2

        from emovid.models.hub import resolve

        if not 0.0 < self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold must be in (0, 1), got {self.score_threshold}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ModelError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; YuNet needs opencv-python >= 4.5.4")
        try:
            path = resolve(self.weights, YUNET_WEIGHTS, "yunet").path
        except WeightsUnavailableError as e:
            if self.weights not in YUNET_WEIGHTS.weights:
                raise
            src = YUNET_WEIGHTS.weights[self.weights]
            why = getattr(e, "reason", "offline")
            raise WeightsUnavailableError(
                f"YuNet weights {src.hf_filename} (Hugging Face repo {src.hf_hub_id}) are not cached and cannot be "
                f"downloaded: {why}. On a connected machine run `emovid weights fetch yunet --to DIR` and copy DIR "
                f"here as $EMOVID_HOME, or `hf download {src.hf_hub_id} {src.hf_filename}` (or download "
                f"https://huggingface.co/{src.hf_hub_id}/resolve/main/{src.hf_filename}), then give "
                f"--detector yunet:PATH/{src.hf_filename}"
            ) from e
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
        except cv2.error as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ModelError(f"not a YuNet ONNX model OpenCV can run ({msg})", path) from e

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB ``uint8`` frame (grey frames are expanded to three channels), best score first."""
        import cv2

        img = np.asarray(rgb)
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        scale = self.max_side / max(h, w) if self.max_side and max(h, w) > self.max_side else 1.0
        if scale != 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, found = self._net.detect(bgr)
        if found is None:
            return []
        inv = 1.0 / scale
        faces = []
        for row in np.asarray(found, np.float64).reshape(-1, 15):
            x, y, bw, bh = (float(v) * inv for v in row[:4])
            if max(bw, bh) < self.min_size_px:
                continue
            marks = tuple(float(v) * inv for v in row[4:14])
            faces.append(Face((x, y, bw, bh), round(float(row[14]), 4), "yunet", marks))
        return sorted(faces, key=lambda f: -f.score)
