"""MediaPipe Face Mesh (468 3-D landmarks) ported to PyTorch, with the crop around a face box and a head pose.

The network (Kartynnik, Ablavatski, Grishchenko and Grundmann, "Real-time Facial Surface Geometry from Monocular
Video on Mobile GPUs", CVPR 2019 workshops; MediaPipe Face Mesh, Apache-2.0) reads a 192x192 RGB face crop scaled
to ``[0, 1]`` and returns 468 points ``(x, y, z)`` in crop pixels (``z``: depth relative to the face centre, same
scale as ``x``, smaller is nearer the camera) and a face-presence logit.

The weights in ``emovid/weights/face_landmark.safetensors`` are MediaPipe's ``face_landmark.tflite`` (float32
numbers, unchanged) rewritten into this module's layout by ``tools/convert_facemesh.py``; ``tests/test_facemesh.py``
checks the port against the TFLite interpreter's outputs. Licence and model card: ``emovid/weights/
LICENSE-blazeface.txt`` (second part).

The crop follows MediaPipe's face-detection-to-ROI step: a square of side 1.5 x the box's longer side, centred on
the box, rotated so that the detector's two eye key points (right eye, left eye: BlazeFace's first two) are level.
:func:`head_pose` solves a perspective-n-point problem on six of the 468 points (:data:`POSE_INDICES`).
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emovid.errors import ModelError

__all__ = [
    "CANONICAL_POINTS",
    "POSE_INDICES",
    "FaceMesh",
    "FaceMeshNet",
    "TRUNK_BLOCKS",
    "crop_transform",
    "euler_to_matrix",
    "head_pose",
    "load_facemesh",
]

WEIGHTS_FILE = "face_landmark.safetensors"
INPUT_SIZE = 192
N_LANDMARKS = 468
ROI_SCALE = 1.5

#: ``(in_channels, out_channels, stride)`` of the shared trunk's residual blocks, in graph order.
TRUNK_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (16, 16, 1),
    (16, 16, 1),
    (16, 32, 2),
    (32, 32, 1),
    (32, 32, 1),
    (32, 64, 2),
    (64, 64, 1),
    (64, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 128, 1),
    (128, 128, 2),
    (128, 128, 1),
    (128, 128, 1),
)
#: Blocks of the landmark branch (on the trunk's 6x6 output) before its 128 -> 32 projection.
MESH_BLOCKS: tuple[tuple[int, int, int], ...] = ((128, 128, 2), (128, 128, 1), (128, 128, 1))

#: Mesh indices used by :func:`head_pose`: nose tip, chin, right eye outer corner, left eye outer corner, right
#: mouth corner, left mouth corner (the subject's right and left).
POSE_INDICES: tuple[int, ...] = (1, 152, 33, 263, 61, 291)

#: The :data:`POSE_INDICES` points of a frontal face, ``(x right, y down, z away from the camera)``, nose tip at the
#: origin, in units of the outer-eye-corner distance: this model's own output on six face photos
#: (``tools/convert_facemesh.py --canonical``: eye-corner line levelled in 3-D, mirrored pairs averaged, then the
#: mean over the photos).
CANONICAL_POINTS = np.array(
    [
        [0.0, 0.0, 0.0],  # 1: nose tip
        [0.0, 0.744, 0.448],  # 152: chin
        [-0.5, -0.41, 0.465],  # 33: right eye, outer corner
        [0.5, -0.41, 0.465],  # 263: left eye, outer corner
        [-0.311, 0.28, 0.417],  # 61: right mouth corner
        [0.311, 0.28, 0.417],  # 291: left mouth corner
    ]
)


def _block(cin: int, cout: int, stride: int) -> nn.Module:
    """The face mesh's residual block: BlazeFace's, with a per-channel PReLU."""
    from emovid.faces.blazeface import _BlazeBlock

    return _BlazeBlock(cin, cout, stride, prelu=True)


class FaceMeshNet(nn.Module):
    """MediaPipe's face-landmark network.

    ``forward(x [B, 3, 192, 192], RGB in [0, 1])`` returns ``(landmarks [B, 1404], face_logit [B, 1])``: the TFLite
    model's ``conv2d_20`` (468 x (x, y, z) in crop pixels) and ``conv2d_30`` outputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2)
        self.stem_act = nn.PReLU(16)
        self.trunk = nn.ModuleList(_block(*b) for b in TRUNK_BLOCKS)
        self.mesh = nn.ModuleList(_block(*b) for b in MESH_BLOCKS)
        self.mesh_proj = nn.Conv2d(128, 32, 1)
        self.mesh_proj_act = nn.PReLU(32)
        self.mesh_tail = _block(32, 32, 1)
        self.mesh_head = nn.Conv2d(32, 3 * N_LANDMARKS, 3, 3)
        self.flag_block = _block(128, 128, 2)
        self.flag_proj = nn.Conv2d(128, 32, 1)
        self.flag_proj_act = nn.PReLU(32)
        self.flag_tail = _block(32, 32, 1)
        self.flag_head = nn.Conv2d(32, 1, 3, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem_act(self.stem(F.pad(x, (0, 1, 0, 1))))  # 'SAME', 192 px, kernel 3, stride 2
        for block in self.trunk:
            x = block(x)
        m = x
        for block in self.mesh:
            m = block(m)
        m = self.mesh_tail(self.mesh_proj_act(self.mesh_proj(m)))
        f = self.flag_tail(self.flag_proj_act(self.flag_proj(self.flag_block(x))))
        return self.mesh_head(m).flatten(1), self.flag_head(f).flatten(1)


def load_facemesh(device: str | torch.device = "cpu") -> FaceMeshNet:
    """The face-landmark network with the bundled weights, in eval mode on ``device``."""
    from safetensors.torch import load_file

    path = importlib.resources.files("emovid").joinpath("weights", WEIGHTS_FILE)
    try:
        state = load_file(str(path))
    except Exception as e:  # missing or damaged file (safetensors raises its own error type)
        raise ModelError(f"cannot read the bundled face-mesh weights ({e}); reinstall emovid", str(path)) from e
    net = FaceMeshNet()
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval().to(device).to(memory_format=torch.channels_last)


def crop_transform(
    box: Sequence[float], keypoints: Sequence[float] | np.ndarray | None = None, size: int = INPUT_SIZE
) -> np.ndarray:
    """The 2x3 affine map from crop pixels to frame pixels for a face box (MediaPipe's ROI rule).

    Args:
        box: ``(x, y, w, h)`` in frame pixels.
        keypoints: the detector's key points as ``(x, y)`` pairs (flat or ``[K, 2]``); the first two (the subject's
            right eye, then left eye) set the rotation. ``None`` or fewer than two points: no rotation.
        size: the crop's side in pixels.

    Returns:
        ``A [2, 3]`` with ``frame_point = A @ (u, v, 1)`` for a crop point ``(u, v)``.
    """
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2, y + h / 2
    angle = 0.0
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
        if len(kp) >= 2:
            (rx, ry), (lx, ly) = kp[0], kp[1]
            angle = math.atan2(ly - ry, lx - rx)  # image y points down: positive = the face is tilted clockwise
    s = ROI_SCALE * max(w, h) / size
    c, si = math.cos(angle) * s, math.sin(angle) * s
    half = size / 2
    return np.array([[c, -si, cx - c * half + si * half], [si, c, cy - si * half - c * half]])


def _crop(frame: np.ndarray, a: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    import cv2

    return cv2.warpAffine(
        frame, a, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )


class FaceMesh:
    """468 face landmarks in frame pixels from MediaPipe's face-mesh network, run in PyTorch.

    Args:
        device: where the network runs (``"cpu"``, ``"cuda"``, ...).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._net = load_facemesh(device)

    def raw(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(landmarks [B, 468, 3] in crop pixels, face logits [B])`` for ``uint8 [B, 192, 192, 3]`` RGB crops."""
        x = torch.from_numpy(np.ascontiguousarray(crops, np.uint8))
        dev = next(self._net.parameters()).device
        with torch.inference_mode():
            # NHWC all the way: the depthwise convolutions run 1.5x faster channels-last on CPU
            x = (x.to(dev).permute(0, 3, 1, 2).float() / 255.0).contiguous(memory_format=torch.channels_last)
            pts, flag = self._net(x)
        return pts.float().cpu().numpy().reshape(-1, N_LANDMARKS, 3), flag.float().cpu().numpy()[:, 0]

    def landmarks(
        self, frame_rgb: np.ndarray, box: Sequence[float], keypoints: Sequence[float] | np.ndarray | None = None
    ) -> np.ndarray:
        """The 468 ``(x, y, z)`` points of the face in ``box`` (``(x, y, w, h)``), in frame pixels.

        ``z`` is the model's relative depth scaled like ``x`` (frame pixels; smaller is nearer the camera).
        ``keypoints`` (the detector's, eyes first) level the crop; see :func:`crop_transform`.
        """
        return self.landmarks_batch(frame_rgb, [box], None if keypoints is None else [keypoints])[0]

    def landmarks_batch(
        self,
        frame_rgb: np.ndarray,
        boxes: Sequence[Sequence[float]],
        keypoints: Sequence[Sequence[float] | np.ndarray | None] | None = None,
        with_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`landmarks` for several faces of one frame in one forward pass.

        Returns:
            ``[N, 468, 3]`` frame-pixel points; with ``with_scores`` also the face-presence scores ``[N]``
            (sigmoid of the face flag; MediaPipe drops faces at 0.5 or less).
        """
        img = np.asarray(frame_rgb)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ModelError(f"the face mesh needs an RGB or grey frame, got shape {tuple(img.shape)}")
        kps = list(keypoints) if keypoints is not None else [None] * len(boxes)
        if len(kps) != len(boxes):
            raise ModelError(f"{len(boxes)} boxes but {len(kps)} key-point sets")
        if not len(boxes):
            empty = np.zeros((0, N_LANDMARKS, 3), np.float32)
            return (empty, np.zeros(0, np.float32)) if with_scores else empty
        mats = [crop_transform(b, k) for b, k in zip(boxes, kps, strict=True)]
        pts, logits = self.raw(np.stack([_crop(img, a) for a in mats]))
        out = np.empty_like(pts)
        for i, a in enumerate(mats):
            out[i, :, :2] = pts[i, :, :2] @ a[:, :2].T + a[:, 2]
            out[i, :, 2] = pts[i, :, 2] * math.hypot(a[0, 0], a[1, 0])
        if with_scores:
            return out, 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        return out


def _camera(frame_size: Sequence[int]) -> np.ndarray:
    w, h = float(frame_size[0]), float(frame_size[1])
    f = max(w, h)
    return np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (degrees, camera axes: x right, y down, z forward); see :func:`head_pose`."""
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def head_pose(landmarks_468: np.ndarray, frame_size: Sequence[int]) -> dict[str, float]:
    """Yaw, pitch and roll (degrees) of a face from its mesh, by ``cv2.solvePnP`` on six points.

    The :data:`CANONICAL_POINTS` model is fitted to the image positions of the :data:`POSE_INDICES` landmarks with
    a pinhole camera of focal length ``max(width, height)`` centred on the frame, starting from a frontal pose at the
    distance the eye-corner spacing implies (Levenberg-Marquardt, ``SOLVEPNP_ITERATIVE``). The rotation is reported as
    ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` in camera axes (x right, y down, z forward; :func:`euler_to_matrix`):
    yaw > 0 turns the face towards the image's left (the subject's right), pitch > 0 turns it down, roll > 0 tilts
    it clockwise on screen.
    All zero for a frontal face.

    Args:
        landmarks_468: ``[468, 2 or 3]`` points in frame pixels (only ``x, y`` are used).
        frame_size: ``(width, height)`` of the frame in pixels.
    """
    import cv2

    pts = np.asarray(landmarks_468, np.float64)
    if pts.ndim != 2 or pts.shape[0] != N_LANDMARKS or pts.shape[1] < 2:
        raise ModelError(f"head_pose needs [468, 2|3] landmarks, got shape {tuple(pts.shape)}")
    image_pts = np.ascontiguousarray(pts[list(POSE_INDICES), :2])
    cam = _camera(frame_size)
    # Start from a frontal face at the distance the eye-corner spacing implies (the model's is 1): from a blind
    # start the six, nearly coplanar points often converge to the mirrored pose (roll ~ 180 degrees).
    eyes = float(np.linalg.norm(image_pts[3] - image_pts[2]))
    z = cam[0, 0] / max(eyes, 1e-6)
    t0 = np.array(
        [[(image_pts[0, 0] - cam[0, 2]) * z / cam[0, 0]], [(image_pts[0, 1] - cam[1, 2]) * z / cam[1, 1]], [z]]
    )
    ok, rvec, _ = cv2.solvePnP(
        CANONICAL_POINTS,
        image_pts,
        cam,
        None,
        np.zeros((3, 1)),
        t0,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return {"yaw": float("nan"), "pitch": float("nan"), "roll": float("nan")}
    r, _ = cv2.Rodrigues(rvec)
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -r[1, 2]))))
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return {"yaw": round(yaw, 2), "pitch": round(pitch, 2), "roll": round(roll, 2)}
