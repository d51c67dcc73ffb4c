"""Face detection that works offline: OpenCV's Haar cascades (shipped in opencv-python-headless) plus a light NMS.

:class:`HaarFaceDetector` runs, on a grey, histogram-equalised copy of the frame downscaled to ``max_side``:

* frontal cascades: ``frontalface_alt2`` first (on emovid's synthetic faces it finds 92 % of frames against 87 %
  for ``frontalface_default``), then ``frontalface_default``, which catches some faces alt2 misses; both ship
  with OpenCV under its BSD-style licence;
* then the profile cascade on the frame and on its mirror image (the cascade only knows faces turned one way),
  which catches three-quarter views the frontal cascades miss (the cameraman in scikit-image's ``camera.png``).

With ``strategy="fallback"`` (default) the cascades run in that order and stop at the first that finds a face:
each extra pass costs about as much as the first, and most frames are settled by it. ``strategy="all"`` runs
every cascade, which also finds a profile face next to a frontal one.

Boxes from the cascades are merged by non-maximum suppression (:func:`nms`) that also drops a box lying mostly
inside a higher-scored one (cascades of different kinds disagree on the extent of the same face).

Scores: a Haar cascade gives no probability. The score here is ``n / (n + 5)`` where ``n`` is the number of raw
sliding-window hits that were merged into the box (OpenCV's ``numDetections``); it grows with the evidence
(median 0.82 on synthetic faces) and is comparable between boxes of one detector, not a calibrated probability.

The preset ``"haar-fer"`` reproduces the ``fer`` package's own detector (``frontalface_default``, scale factor
1.1, 5 neighbours, 50-pixel minimum, full resolution, no equalisation) for side-by-side comparisons.

The optional ``"yunet"`` preset is a CNN detector (:mod:`emovid.faces.yunet`, run by OpenCV's ``FaceDetectorYN``)
whose weights are fetched once from the Hugging Face Hub: more accurate than the cascades, not available offline
until cached.

Any object with ``detect(rgb) -> list[Face]`` can be used where a detector is expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from emovid.errors import ConfigError

__all__ = [
    "DETECTORS",
    "Face",
    "FaceDetector",
    "DEFAULT_DETECTOR",
    "HaarFaceDetector",
    "detector_device",
    "TrackingDetector",
    "create_detector",
    "iou_matrix",
    "nms",
]


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the frame given to the detector.
        score: confidence in ``[0, 1]`` (see the module notes for what it means per detector).
        kind: which detector or cascade found it (``frontal`` / ``profile`` / ``yunet`` / ``blazeface``).
        landmarks: ``(x, y)`` pairs of facial landmarks in frame pixels when the detector gives them (YuNet: right
            eye, left eye, nose tip, right and left mouth corner; BlazeFace: six key points, see
            :mod:`emovid.faces.blazeface`), else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    kind: str = "frontal"
    landmarks: tuple[float, ...] | None = None


class FaceDetector:
    """Interface: ``detect(rgb uint8 [H, W, 3]) -> list[Face]`` sorted by score, best first.

    A detector whose ``grey_input`` is true also takes the grey ``[H, W]`` frame (``emovid analyze`` then passes
    the grey copy it makes anyway for the face crops).
    """

    name = "detector"
    grey_input = False

    def detect(self, rgb: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union between boxes ``a [N, 4]`` and ``b [M, 4]`` in ``(x, y, w, h)``: ``[N, M]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area_a = (a[:, 2] * a[:, 3])[:, None]
    area_b = (b[:, 2] * b[:, 3])[None, :]
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3, contain_threshold: float = 0.7) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    A box is dropped when its IoU with a kept box exceeds ``iou_threshold`` or when more than ``contain_threshold``
    of the smaller box's area lies inside the other (nested detections of one face at two scales).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep: list[int] = []
    for i in order:
        if keep:
            kb = boxes[keep]
            iou = iou_matrix(boxes[i : i + 1], kb)[0]
            inter = _intersection(boxes[i : i + 1], kb)[0]
            small = np.minimum(boxes[i, 2] * boxes[i, 3], kb[:, 2] * kb[:, 3])
            contain = np.where(small > 0, inter / np.maximum(small, 1e-12), 0.0)
            if (iou > iou_threshold).any() or (contain > contain_threshold).any():
                continue
        keep.append(int(i))
    return keep


@dataclass
class HaarFaceDetector(FaceDetector):
    """OpenCV Haar-cascade face detector (frontal + optional profile), offline and dependency-free.

    Args:
        frontal: frontal cascade file names in ``cv2.data.haarcascades`` (or paths), in the order they run.
        profile: also run the profile cascade (on the frame and its mirror image), after the frontal ones.
        strategy: ``"fallback"``: stop at the first cascade that finds a face; ``"all"``: run every cascade.
        scale_factor: image-pyramid step of ``detectMultiScale``.
        min_neighbors: raw hits a box needs to be kept.
        min_size_frac: smallest face side as a fraction of the frame's shorter side (after any downscaling).
        min_size_px: smallest face side in pixels of the detection image (whichever bound is larger wins).
        max_side: frames whose longer side exceeds this are downscaled for detection (speed; boxes are mapped back);
            ``None`` or 0 detects at full resolution.
        equalize: histogram-equalise the grey image first (helps dim or low-contrast faces).
    """

    frontal: tuple[str, ...] = ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml")
    profile: bool = True
    strategy: str = "fallback"
    scale_factor: float = 1.1
    min_neighbors: int = 4
    min_size_frac: float = 0.06
    min_size_px: int = 20
    max_side: int | None = 640
    equalize: bool = True
    name: str = "haar"
    grey_input = True
    _cascades: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scale_factor <= 1.0:
            raise ConfigError(f"scale_factor must be > 1, got {self.scale_factor}")
        import cv2

        if self.strategy not in ("fallback", "all"):
            raise ConfigError(f"strategy must be fallback or all, got {self.strategy!r}")
        files = [(f, "frontal") for f in self.frontal]
        if self.profile:
            files.append(("haarcascade_profileface.xml", "profile"))
        for f, kind in files:
            path = f if os.path.exists(f) else os.path.join(cv2.data.haarcascades, f)
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise ConfigError(f"cannot load the Haar cascade {path}; reinstall opencv-python-headless")
            self._cascades.append((cascade, kind))

    def _scale(self, h: int, w: int) -> float:
        return self.max_side / max(h, w) if self.max_side and max(h, w) > self.max_side else 1.0

    def _grey(self, img: np.ndarray, scale: float) -> np.ndarray:
        import cv2

        img = np.asarray(img)
        grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            h, w = grey.shape[:2]
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        return grey

    def _min_size(self, h: int, w: int, scale: float) -> int:
        """Smallest face side in detection pixels for a frame of ``h x w`` (original pixels)."""
        return max(self.min_size_px, int(round(self.min_size_frac * min(h, w) * scale)))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB (or grey ``[H, W]``) ``uint8`` frame, best score first, boxes in the frame's pixels."""
        h, w = np.asarray(rgb).shape[:2]
        scale = self._scale(h, w)
        return self._search(self._grey(rgb, scale), scale, self._min_size(h, w, scale), None, (0, 0))

    def detect_sized(self, rgb: np.ndarray, smallest: float, largest: float) -> list[Face]:
        """Faces whose side lies between ``smallest`` and ``largest`` frame pixels, searched in the whole frame.

        The cascades run only the pyramid levels of that size band; those levels are the same images and windows a
        full search uses, so a face inside the band is found with the same box as by :meth:`detect` whenever the
        band holds all of the raw hits merged into it (a band of 2x either way around a face's size did on every
        frame of bench/analyze.py's video). A fraction of the cost: the small scales dominate a full search.
        """
        h, w = np.asarray(rgb).shape[:2]
        scale = self._scale(h, w)
        ms = max(self._min_size(h, w, scale), int(smallest * scale))
        mx = int(np.ceil(largest * scale))
        if mx < ms:
            return []
        return self._search(self._grey(rgb, scale), scale, ms, mx, (0, 0))

    def _search(self, grey: np.ndarray, scale: float, ms: int, mx: int | None, offset) -> list[Face]:
        import cv2

        h, w = grey.shape[:2]
        if min(h, w) < ms:
            return []
        extra = {"maxSize": (mx, mx)} if mx else {}
        boxes, scores, kinds = [], [], []
        for cascade, kind in self._cascades:
            if boxes and self.strategy == "fallback":
                break
            views = [(grey, False), (cv2.flip(grey, 1), True)] if kind == "profile" else [(grey, False)]
            for img, flipped in views:
                found, hits = cascade.detectMultiScale2(
                    img, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(ms, ms), **extra
                )
                for (x, y, bw, bh), n in zip(
                    np.asarray(found).reshape(-1, 4), np.asarray(hits).reshape(-1), strict=False
                ):
                    if flipped:
                        x = w - x - bw
                    boxes.append((float(x), float(y), float(bw), float(bh)))
                    # Profile hits are weaker evidence of a face than frontal ones at equal counts.
                    scores.append(float(n) / (float(n) + 5.0) * (0.9 if kind == "profile" else 1.0))
                    kinds.append(kind)
        if not boxes:
            return []
        keep = nms(np.array(boxes), np.array(scores))
        inv = 1.0 / scale
        ox, oy = offset
        return [
            Face(
                (boxes[i][0] * inv + ox, boxes[i][1] * inv + oy, boxes[i][2] * inv, boxes[i][3] * inv),
                round(scores[i], 4),
                kinds[i],
            )
            for i in keep
        ]


@dataclass
class TrackingDetector(FaceDetector):
    """Full-frame detection every ``redetect_every`` frames; in between, a search limited to the sizes of the
    faces the last full searches found (:meth:`HaarFaceDetector.detect_sized`, ``size_range`` either way).

    Most of a Haar search's cost is its many small scales; faces already known need only the scales around their
    size, and those scales give the same boxes as the full search. A frame gets a full search when the period is
    up or when no face size is known (none found yet, or two full searches in a row found none), so a scene
    without faces is searched in full on every frame; a face of a *new*
    size that appears while others are tracked is found at the next full search (at most ``redetect_every - 1``
    frames late). Call :meth:`reset` between videos (``emovid analyze`` does).

    Args:
        base: the detector doing the searches.
        redetect_every: full-frame search period in frames (1 = every frame, i.e. ``base`` alone).
        size_range: face sides searched between frames: known sides divided / multiplied by this.
    """

    base: HaarFaceDetector
    redetect_every: int = 5
    size_range: float = 2.0
    _sides: tuple[float, float] | None = field(default=None, init=False, repr=False)
    _since_full: int = field(default=0, init=False, repr=False)
    _misses: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.redetect_every < 1:
            raise ConfigError(f"redetect_every must be at least 1, got {self.redetect_every}")
        if self.size_range <= 1.0:
            raise ConfigError(f"size_range must be > 1, got {self.size_range}")
        self.name = f"{self.base.name}+track{self.redetect_every}"
        self.grey_input = self.base.grey_input

    def reset(self) -> None:
        self._sides = None
        self._since_full = 0
        self._misses = 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if self._sides is not None and self._since_full + 1 < self.redetect_every:
            self._since_full += 1
            lo, hi = self._sides
            return self.base.detect_sized(rgb, lo / self.size_range, hi * self.size_range)
        faces = self.base.detect(rgb)
        if faces:
            sides = [max(f.box[2], f.box[3]) for f in faces]
            self._sides = (min(sides), max(sides))
            self._misses = 0
        else:
            # The sizes survive one full search without a face (the cascade often misses a face for a frame or
            # two); after two in a row every frame gets a full search until a face is found again.
            self._misses += 1
            if self._misses > 1:
                self._sides = None
        self._since_full = 0
        return faces


#: Named detector presets for ``create_detector`` and the ``--detector`` options (Haar cascade settings, or
#: ``type: yunet`` for :class:`emovid.faces.yunet.YuNetFaceDetector`, whose weights are downloaded on first use, or
#: ``type: blazeface`` for :class:`emovid.faces.blazeface.BlazeFaceDetector`, MediaPipe's models shipped with emovid:
#: ``blazeface`` short range, ``blazeface-full`` full range for small faces in wide shots).
DETECTORS: dict[str, dict] = {
    "haar": {},
    "haar-full": {"strategy": "all"},
    "haar-frontal": {"frontal": ("haarcascade_frontalface_alt2.xml",), "profile": False},
    "haar-fast": {
        "frontal": ("haarcascade_frontalface_alt2.xml",),
        "profile": False,
        "max_side": 480,
        "scale_factor": 1.2,
    },
    "haar-fer": {
        "frontal": ("haarcascade_frontalface_default.xml",),
        "profile": False,
        "min_neighbors": 5,
        "min_size_frac": 0.0,
        "min_size_px": 50,
        "max_side": None,
        "equalize": False,
    },
    "yunet": {"type": "yunet"},
    "blazeface": {"type": "blazeface"},
    "blazeface-full": {"type": "blazeface", "model": "full"},
}


#: The detector used when none is named: MediaPipe's BlazeFace, which beat the Haar cascades on real faces (recall
#: 0.75/0.69/0.81 vs 0.75/0.19/0.19 upright / 30 / 45 degrees, no false boxes vs 12; 618 vs 567 of 620 labelled
#: face photos; BENCHMARKS.md "detectors" and "expressions_real").
DEFAULT_DETECTOR = "blazeface"


def detector_device(spec: str | FaceDetector | None, device: object) -> dict:
    """``{"device": ...}`` for presets whose network can run on ``device`` (BlazeFace), else ``{}`` (CPU-only ones)."""
    if not isinstance(spec, str) and spec is not None:
        return {}
    name = (spec or DEFAULT_DETECTOR).partition(":")[0]
    return {"device": str(device)} if DETECTORS.get(name, {}).get("type") == "blazeface" else {}


def create_detector(
    spec: str | FaceDetector | None = DEFAULT_DETECTOR, redetect_every: int = 1, **overrides
) -> FaceDetector:
    """A face detector by preset name (:data:`DETECTORS`), or ``spec`` itself when it already is one.

    ``"yunet:PATH"`` is YuNet with a local ONNX file. ``redetect_every > 1`` wraps a Haar preset in a
    :class:`TrackingDetector` (full-frame search every that many frames, size-band searches in between); YuNet and
    BlazeFace search every frame in one pass, so they are returned as they are.

    Raises:
        ConfigError: unknown preset.
        emovid.errors.WeightsUnavailableError: YuNet's weights are not cached and cannot be downloaded.
    """
    if redetect_every < 1:
        raise ConfigError(f"redetect_every must be at least 1, got {redetect_every}")
    if spec is None:
        spec = DEFAULT_DETECTOR
    if not isinstance(spec, str):
        return spec
    name, _, arg = spec.partition(":")
    if name not in DETECTORS or (arg and DETECTORS[name].get("type") != "yunet"):
        raise ConfigError(f"unknown face detector {spec!r}; choose one of {', '.join(DETECTORS)} (or yunet:FILE.onnx)")
    opts = {"name": name, **DETECTORS[name], **overrides}
    kind = opts.pop("type", "haar")
    if kind == "blazeface":
        from emovid.faces.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(**opts)
    if kind == "yunet":
        from emovid.faces.yunet import YuNetFaceDetector

        if arg:
            opts["weights"] = arg
        return YuNetFaceDetector(**opts)
    det = HaarFaceDetector(**opts)
    return TrackingDetector(det, redetect_every) if redetect_every > 1 else det
