"""Square face crops with margin, and the EmoNeXt face-sequence sampling of N evenly spaced face crops per video.

Crop geometry (:func:`square_box`): the square is centred on the box, its side is the longer box side times
``1 + 2 * margin`` plus ``2 * margin_px``; the box grows by ``(side - w) // 2`` pixels to the left (likewise
up), in whole pixels. With ``margin=0`` and ``margin_px=10`` this is exactly the ``fer`` package's crop
(``tosquare`` then 10-pixel offsets). Parts of the square outside the frame are filled with the mean colour of the
frame's bottom two rows (again as ``fer`` pads), so faces at the border keep their scale instead of being
stretched.

:func:`video_face_crops` implements the EmoNeXt recipe's "30 face crops per video": it decodes N evenly spaced frames
(:func:`emovid.video.uniform_indices`), detects faces in each, tracks them across those N samples, picks the main
face (:func:`emovid.faces.track.main_track`) and crops it where it was detected. Samples where the main face was
not detected are marked ``has_face = False`` and hold a zero crop: no box is interpolated or invented.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from emovid.faces.detect import FaceDetector, create_detector
from emovid.faces.track import IoUTracker, main_track

__all__ = [
    "ALIGN_DOWN",
    "ALIGN_SIDE",
    "HAAR_FRAMING",
    "FaceCrops",
    "align_crop",
    "haar_framed",
    "crop_square",
    "eye_centres",
    "face_crop",
    "face_tensor",
    "square_box",
    "video_face_crops",
]

#: Aligned-crop geometry in eye distances (see :func:`align_crop`): the side of the square that matches a BlazeFace
#: box, and how far the box centre lies below the midpoint of the eyes. Medians over the upright faces of the
#: real labelled set in ``tools/eval_expressions.py`` (faces detected by BlazeFace).
ALIGN_SIDE = 2.35
ALIGN_DOWN = 0.60
#: How the Haar cascade frames a face compared with another detector's box: ``(Haar side / box side, Haar centre
#: below the box centre in box sides)``. The ``fer`` and ``facex`` models were trained and are run on Haar boxes;
#: :func:`haar_framed` gives them that framing from any detector. Medians over the 246 faces of the real labelled
#: set both detectors found (``tools/eval_expressions.py``): BlazeFace's box is smaller and sits lower.
HAAR_FRAMING: dict[str, tuple[float, float]] = {"blazeface": (1.12, -0.145)}


def square_box(box: tuple[float, float, float, float], margin: float = 0.2, margin_px: int = 0) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square crop around ``box = (x, y, w, h)`` (may extend past the frame)."""
    x, y, w, h = (float(v) for v in box)
    sq = max(int(round(max(w, h) * (1 + 2 * margin))), 1)
    # Integer arithmetic as in fer's tosquare: the shorter side grows by (sq - side) // 2 before the box.
    x0 = math.floor(x + 1e-9) - (sq - int(round(w))) // 2 - int(margin_px)
    y0 = math.floor(y + 1e-9) - (sq - int(round(h))) // 2 - int(margin_px)
    side = sq + 2 * int(margin_px)
    return x0, y0, side


def crop_square(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    size: int | tuple[int, int] | None = None,
    margin: float = 0.2,
    margin_px: int = 0,
    fill: float | tuple[float, ...] | None = None,
    interpolation: str = "linear",
) -> np.ndarray:
    """The square crop around a face box, resized to ``size``.

    Args:
        image: ``uint8 [H, W]`` or ``[H, W, C]``.
        box: ``(x, y, w, h)``.
        size: output side (or ``(H, W)``); ``None`` keeps the crop's own size.
        margin: extra context on each side, as a fraction of the box's longer side.
        margin_px: extra context on each side in pixels.
        fill: value for parts outside the image; ``None`` = mean of the image's bottom two rows.
        interpolation: ``linear`` (OpenCV's default, what ``fer`` uses) or ``area`` (better for large shrinks).
    """
    import cv2

    img = np.asarray(image)
    h, w = img.shape[:2]
    x0, y0, side = square_box(box, margin, margin_px)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if xa == x0 and ya == y0 and xb == x0 + side and yb == y0 + side:
        crop = img[ya:yb, xa:xb]
    else:
        if fill is None:
            bottom = img[max(h - 2, 0) :].reshape(-1, *img.shape[2:]).astype(np.float64)
            fill = np.round(bottom.mean(0)) if bottom.size else 0
        crop = np.empty((side, side, *img.shape[2:]), img.dtype)
        crop[...] = np.asarray(fill, np.float64).astype(img.dtype)
        if xb > xa and yb > ya:
            crop[ya - y0 : yb - y0, xa - x0 : xb - x0] = img[ya:yb, xa:xb]
    if size is None:
        return np.ascontiguousarray(crop)
    oh, ow = (size, size) if isinstance(size, int) else size
    interp = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[interpolation]
    return cv2.resize(np.ascontiguousarray(crop), (ow, oh), interpolation=interp)


def haar_framed(box: tuple[float, float, float, float], kind: str | None) -> tuple[float, float, float, float]:
    """``box`` (from the detector ``kind``) moved and scaled to frame the face as a Haar cascade box would."""
    ratio, shift = HAAR_FRAMING.get(kind or "", (1.0, 0.0))
    if ratio == 1.0 and shift == 0.0:
        return tuple(box)
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2 + shift * side
    nw, nh = w * ratio, h * ratio
    return cx - nw / 2, cy - nh / 2, nw, nh


def eye_centres(landmarks) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``((x, y) of the subject's right eye, (x, y) of the left eye)`` from a face's key points, or ``None``.

    Takes the 5 or 6 detector key points (YuNet, BlazeFace: right eye first, then left eye) or the 468-point face
    mesh (eye centres = mean of MediaPipe's eye-corner points 33/133 and 362/263), flat or as pairs.
    """
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim == 1:
        if pts.size < 4:
            return None
        pts = pts.reshape(-1, 2)
    if pts.shape[0] >= 468:
        right, left = pts[[33, 133], :2].mean(0), pts[[362, 263], :2].mean(0)
    elif pts.shape[0] >= 2:
        right, left = pts[0, :2], pts[1, :2]
    else:
        return None
    if not (np.isfinite(right).all() and np.isfinite(left).all()):
        return None
    return (float(right[0]), float(right[1])), (float(left[0]), float(left[1]))


def align_crop(
    image: np.ndarray,
    eyes: tuple[tuple[float, float], tuple[float, float]],
    size: int | tuple[int, int],
    margin: float = 0.2,
    margin_px: int = 0,
    fill: float | tuple[float, ...] | None = None,
    side: float = ALIGN_SIDE,
    down: float = ALIGN_DOWN,
) -> np.ndarray:
    """A square face crop rotated so the eyes are level and scaled by the eye distance.

    The square's side is ``side`` eye distances times ``1 + 2 * margin`` plus ``2 * margin_px`` (as
    :func:`crop_square` grows a box), centred ``down`` eye distances below the eyes' midpoint along the face's own
    vertical axis (defaults: BlazeFace's box, :data:`ALIGN_SIDE`, :data:`ALIGN_DOWN`). On an upright frontal face
    it is the box crop; on a tilted head it is the same face turned upright, at a scale that does not follow the
    detector's box jitter.

    Args:
        image: ``uint8 [H, W]`` or ``[H, W, C]``.
        eyes: ``((x, y) right eye, (x, y) left eye)`` of the subject (:func:`eye_centres`).
        size: output side (or ``(H, W)``).
        margin, margin_px: context as in :func:`crop_square`.
        fill: value outside the image; ``None`` = mean of the image's bottom two rows (as :func:`crop_square`).
    """
    import cv2

    img = np.ascontiguousarray(image)
    (rx, ry), (lx, ly) = eyes
    dx, dy = lx - rx, ly - ry
    dist = max(math.hypot(dx, dy), 1.0)
    cos, sin = dx / dist, dy / dist
    cx = (rx + lx) / 2 - sin * down * dist
    cy = (ry + ly) / 2 + cos * down * dist
    side = dist * side * (1 + 2 * margin) + 2 * margin_px
    oh, ow = (size, size) if isinstance(size, int) else size
    s = ow / side
    if fill is None:
        h = img.shape[0]
        bottom = img[max(h - 2, 0) :].reshape(-1, *img.shape[2:]).astype(np.float64)
        fill = np.round(bottom.mean(0)) if bottom.size else 0
    if s < 1:  # shrink the face's neighbourhood by area averaging first: a warp alone would alias
        half = side * 0.75  # covers the rotated square (half-diagonal 0.71 side)
        region = crop_square(img, (cx - half, cy - half, 2 * half, 2 * half), None, margin=0.0, fill=fill)
        x0, y0 = math.floor(cx - half + 1e-9), math.floor(cy - half + 1e-9)
        target = max(int(round(region.shape[0] * s)), 1)
        f = target / region.shape[0]
        img = cv2.resize(region, (target, target), interpolation=cv2.INTER_AREA)
        cx, cy, s = (cx - x0 + 0.5) * f - 0.5, (cy - y0 + 0.5) * f - 0.5, s / f  # cv2.resize's pixel centres
    # dst = s * R(-theta) (src - c) + (ow / 2, oh / 2)
    m = np.array([[s * cos, s * sin, 0.0], [-s * sin, s * cos, 0.0]])
    m[:, 2] = (ow / 2, oh / 2) - m[:, :2] @ (cx, cy)
    chans = img.shape[2] if img.ndim == 3 else 1
    border = tuple(float(v) for v in np.broadcast_to(np.asarray(fill, np.float64).reshape(-1), (chans,)))
    return cv2.warpAffine(img, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def face_crop(
    rgb: np.ndarray,
    grey: np.ndarray | None,
    box: tuple[float, float, float, float],
    cfg,
    landmarks=None,
    kind: str | None = None,
    align: bool = False,
    margin: tuple[float, int] | None = None,
) -> np.ndarray:
    """A face model's input crop of one detected face, framed as the model's ``pretrained_cfg`` says.

    The one path from a detected face to a model's crop: the context around the box is ``cfg.crop_margin``, a model
    trained on Haar boxes (``cfg.crop_framing == "haar"``) gets Haar's framing whatever the detector, and the crop
    has ``cfg.input_size``. Colour is left to :func:`face_tensor`, except that a grey model crops the grey frame
    when one is given (the grey the frame-level detector saw, as the ``fer`` package does).

    Args:
        rgb: the frame, ``uint8 [H, W, 3]``.
        grey: the same frame in grey (``cv2.COLOR_RGB2GRAY``), or ``None``.
        box: ``(x, y, w, h)`` in the frame's pixels.
        cfg: the model's :class:`~emovid.models.PretrainedCfg`.
        landmarks: the detector's key points or the face mesh; with ``align`` the crop is turned upright and scaled
            by the eye distance (:func:`align_crop`) when they give the eyes.
        kind: which detector framed the box (:attr:`emovid.faces.detect.Face.kind`).
        margin: ``(fraction, pixels)`` instead of ``cfg.crop_margin``.

    Returns:
        ``uint8 [H, W]`` (grey) or ``[H, W, 3]`` (RGB).
    """
    frac, px = tuple(margin) if margin is not None else tuple(cfg.crop_margin)
    size = tuple(int(v) for v in cfg.input_size)
    src = grey if int(cfg.in_chans) == 1 and grey is not None else rgb
    haar = cfg.crop_framing == "haar"
    eyes = eye_centres(landmarks) if align else None
    if eyes is not None:
        side, down = ALIGN_SIDE, ALIGN_DOWN  # BlazeFace's framing in eye distances
        if haar:
            ratio, shift = HAAR_FRAMING["blazeface"]
            side, down = side * ratio, down + shift * side
        return align_crop(src, eyes, size, margin=frac, margin_px=px, side=side, down=down)
    if haar:
        box = haar_framed(tuple(box), kind)
    return crop_square(src, tuple(box), size, margin=frac, margin_px=px)


def face_tensor(crops, cfg, device="cpu"):
    """Face crops as a model's input: ``float32 [N, in_chans, H, W]``, normalised as its ``pretrained_cfg`` says.

    The one colour and value path of every face model (classifiers and embedders): an RGB crop for a grey model
    becomes grey as OpenCV computes it (``cv2.COLOR_RGB2GRAY``, BT.601 luma rounded to ``uint8``: the grey of
    :func:`face_crop`'s grey frames), a grey crop for an RGB model is repeated in every channel, crops of another
    size are resized to ``cfg.input_size`` (area averaging), and values in ``[0, 1]`` are normalised by
    ``cfg.mean`` / ``cfg.std``.

    Args:
        crops: ``uint8`` crops, each ``[H, W]`` or ``[H, W, 3]`` (a list or a stacked array).
        cfg: the model's :class:`~emovid.models.PretrainedCfg`.
        device: torch device of the result.
    """
    import cv2
    import torch

    chans = int(cfg.in_chans or 3)
    h, w = (int(v) for v in cfg.input_size)
    batch = []
    for crop in crops:
        crop = np.asarray(crop)
        if chans == 1 and crop.ndim == 3:
            crop = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        if crop.shape[:2] != (h, w):
            crop = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA)
        batch.append(crop)
    x = torch.from_numpy(np.stack(batch)).to(device).float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != chans:  # grey crops for an RGB model
        x = x.expand(-1, chans, -1, -1)
    mean = np.resize(np.asarray(cfg.mean, np.float32).reshape(-1), chans)
    std = np.resize(np.asarray(cfg.std, np.float32).reshape(-1), chans)
    return (x - torch.from_numpy(mean).view(1, -1, 1, 1).to(device)) / torch.from_numpy(std).view(1, -1, 1, 1).to(
        device
    )


@dataclass
class FaceCrops:
    """N evenly spaced samples of a video with the main face's crop where it was detected.

    Attributes:
        crops: ``uint8 [N, S, S, 3]`` RGB crops; all zero where ``has_face`` is False.
        has_face: ``bool [N]``: whether the main face was detected in that sample.
        frame_indices: ``int [N]`` frame index of each sample.
        times: ``float [N]`` seconds.
        boxes: ``float [N, 4]`` smoothed main-face boxes ``(x, y, w, h)``; NaN where no face.
        faces_per_frame: ``int [N]`` faces detected in each sample (any track).
        num_tracks: distinct faces tracked over the samples.
        damage: the reader's damage record (:attr:`emovid.video.VideoReader.damage`), ``None`` for a clean file.
    """

    crops: np.ndarray
    has_face: np.ndarray
    frame_indices: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    faces_per_frame: np.ndarray
    num_tracks: int
    damage: dict | None = None

    @property
    def length(self) -> int:
        """Samples with a real face crop."""
        return int(self.has_face.sum())

    def face_crops(self) -> np.ndarray:
        """The real crops only, in time order: ``[length, S, S, 3]``."""
        return self.crops[self.has_face]


def video_face_crops(
    path: str | os.PathLike,
    num_crops: int = 30,
    size: int = 224,
    margin: float = 0.2,
    detector: FaceDetector | str | None = None,
    tracker: IoUTracker | None = None,
    chunk: int = 8,
) -> FaceCrops:
    """The main face in ``num_crops`` evenly spaced frames of a video (the EmoNeXt recipe's crop sampling).

    Frames are decoded a few at a time (``chunk``), so memory holds ``chunk`` frames plus the crops.

    Raises:
        emovid.errors.VideoError: the file cannot be decoded.
    """
    from emovid.video import VideoReader, uniform_indices

    det = create_detector(detector)
    trk = tracker or IoUTracker(max_gap=max(2, num_crops // 2))
    with VideoReader(path) as reader:
        idx = uniform_indices(len(reader), num_crops)
        times_all = reader.frame_times
        per_step: list[list[tuple[int, np.ndarray, tuple[float, ...]]]] = []
        nfaces = np.zeros(len(idx), np.int64)
        for start in range(0, len(idx), chunk):
            frames = reader.get_frames(idx[start : start + chunk], missing="nearest")  # damaged: nearest frame
            for j, frame in enumerate(frames):
                step = start + j
                faces = det.detect(frame)
                nfaces[step] = len(faces)
                ids = trk.update(step, float(times_all[idx[step]]), faces)
                per_step.append(
                    [(tid, crop_square(frame, sm, size, margin=margin, interpolation="area"), sm) for tid, sm in ids]
                )
        damage = reader.damage
    n = len(idx)
    crops = np.zeros((n, size, size, 3), np.uint8)
    has = np.zeros(n, bool)
    boxes = np.full((n, 4), np.nan)
    main = main_track(trk.tracks)
    if main is not None:
        for step, entries in enumerate(per_step):
            for tid, crop, sm in entries:
                if tid == main.id:
                    crops[step], has[step], boxes[step] = crop, True, sm
    return FaceCrops(
        crops=crops,
        has_face=has,
        frame_indices=np.asarray(idx, np.int64),
        times=np.asarray([float(times_all[i]) for i in idx]),
        boxes=boxes,
        faces_per_frame=nfaces,
        num_tracks=len(trk.tracks),
        damage=damage,
    )
