"""Follow faces from the face mesh of the previous frame instead of detecting them again (as MediaPipe does).

With ``emovid analyze --landmarks full`` every face gets MediaPipe's 468-point mesh anyway. The mesh of frame
``k`` says where the face is in frame ``k + 1`` closely enough to crop it there, so the detector is only needed
every ``redetect_every`` frames, when a face is lost (the mesh's face-presence score falls to ``min_presence`` or
below) or when no face is being followed (a face that enters the picture between two searches is found at the
next search). On one CPU thread BlazeFace takes about 4 ms per 640 x 360 frame and the mesh about 2.5 ms per
face (BENCHMARKS.md "detectors"), so a followed frame costs the mesh alone instead of both.

Boxes of followed faces are made from the mesh in the detector's framing: a square of :data:`MESH_BOX_SIDE` times
the mesh's extent along the face's own axes, :data:`MESH_BOX_DOWN` extents below the mesh's centre (medians over
206 real faces found by BlazeFace, ``tools/eval_expressions.py``'s set), so crops, tracks and the JSON look the same
whether a face was detected or followed. The key points of a followed face are the six BlazeFace points read off
the mesh (:data:`MESH_KEYPOINTS`).
"""

from __future__ import annotations

import math

import numpy as np

from emovid.faces.detect import Face, FaceDetector

__all__ = ["MESH_BOX_DOWN", "MESH_BOX_SIDE", "MESH_KEYPOINTS", "MeshFollower", "box_from_mesh", "keypoints_from_mesh"]

MESH_BOX_SIDE = 0.95
MESH_BOX_DOWN = 0.06
#: Mesh points standing for BlazeFace's six key points: right eye (mean of its corners), left eye, nose tip, mouth
#: centre (mean of the inner lips), right and left ear tragion.
MESH_KEYPOINTS: tuple[tuple[int, ...], ...] = ((33, 133), (362, 263), (1,), (13, 14), (234,), (454,))


def keypoints_from_mesh(mesh: np.ndarray) -> tuple[float, ...]:
    """BlazeFace-style key points ``(x0, y0, ..., x5, y5)`` from a ``[468, 2|3]`` mesh."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    return tuple(round(float(v), 2) for idx in MESH_KEYPOINTS for v in pts[list(idx)].mean(0))


def box_from_mesh(mesh: np.ndarray) -> tuple[float, float, float, float]:
    """The detector-framed square box ``(x, y, w, h)`` of a face from its mesh (see the module notes)."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    kp = np.asarray(keypoints_from_mesh(pts)).reshape(-1, 2)
    (rx, ry), (lx, ly) = kp[0], kp[1]
    angle = math.atan2(ly - ry, lx - rx)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # frame -> face axes
    local = pts @ rot.T
    lo, hi = local.min(0), local.max(0)
    extent = float(max(hi - lo))
    centre_local = (lo + hi) / 2 + (0.0, MESH_BOX_DOWN * extent)
    cx, cy = centre_local @ rot  # back to frame axes
    side = MESH_BOX_SIDE * extent
    return float(cx - side / 2), float(cy - side / 2), float(side), float(side)


class MeshFollower:
    """Faces and their meshes frame by frame: detect every ``redetect_every`` frames, follow the mesh in between.

    Args:
        detector: finds faces on the frames that need a search.
        mesh: a :class:`emovid.faces.facemesh.FaceMesh`.
        redetect_every: frames between two detector searches (1: detect on every frame, the mesh never leads).
        min_presence: a followed face whose mesh presence score is at or below this is lost; the frame is then
            searched by the detector.
    """

    def __init__(self, detector: FaceDetector, mesh, redetect_every: int = 5, min_presence: float = 0.5) -> None:
        self.detector, self.mesh = detector, mesh
        self.redetect_every = max(1, int(redetect_every))
        self.min_presence = float(min_presence)
        self.reset()

    def reset(self) -> None:
        """Forget the followed faces (the next frame is searched)."""
        self._prev: list[tuple[Face, np.ndarray]] = []
        self._since = 0
        self.detections = 0
        self.followed = 0

    def step(self, rgb: np.ndarray, search: np.ndarray | None = None) -> tuple[list[Face], list[np.ndarray]]:
        """The faces of this frame and their ``[468, 3]`` meshes (``search``: the frame the detector reads)."""
        if self._prev and self._since < self.redetect_every - 1:
            boxes = [box_from_mesh(m) for _, m in self._prev]
            kps = [keypoints_from_mesh(m) for _, m in self._prev]
            meshes, scores = self.mesh.landmarks_batch(rgb, boxes, kps, with_scores=True)
            if len(scores) and bool((scores > self.min_presence).all()):
                faces = [
                    Face(box_from_mesh(m), round(float(sc), 4), prev.kind, keypoints_from_mesh(m))
                    for (prev, _), m, sc in zip(self._prev, meshes, scores, strict=True)
                ]
                self._prev = list(zip(faces, meshes, strict=True))
                self._since += 1
                self.followed += 1
                return faces, list(meshes)
        faces = self.detector.detect(rgb if search is None else search)
        meshes = list(self.mesh.landmarks_batch(rgb, [f.box for f in faces], [f.landmarks for f in faces]))
        self._prev = list(zip(faces, meshes, strict=True))
        self._since = 0
        self.detections += 1
        return faces, meshes
