"""BlazeFace: MediaPipe's short- and full-range face detectors, ported to PyTorch and shipped with emovid.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", CVPR 2019
workshops) is a small SSD-style detector. MediaPipe Face Detection (Apache-2.0) has two:

* *short range* (:class:`BlazeFaceNet`, ~100 k parameters): a 128x128 RGB image, for faces within about 2 m of
  the camera, i.e. faces that fill a fair part of the frame (webcam, interview and selfie video); small faces in a
  wide shot are missed;
* *full range* (:class:`BlazeFaceFullNet`, ~514 k parameters): a 192x192 image, residual bottleneck blocks down to
  6x6 and a top-down (feature-pyramid-like) path back to a 48x48 map with one anchor per cell, for faces within
  about 5 m: it finds faces down to about 1/16 of the frame's width (``BlazeFaceDetector(model="full")``, preset
  ``blazeface-full``), at about 2-3 times the short-range model's cost on a CPU.

The weights in ``emovid/weights/blazeface_short_range.safetensors`` and ``blazeface_full_range.safetensors`` are
MediaPipe's ``face_detection_short_range.tflite`` / ``face_detection_full_range.tflite`` (float16 numbers,
unchanged) rewritten into this module's layout by ``tools/convert_blazeface.py``; ``tests/test_blazeface.py``
checks the ports against the TFLite interpreter's outputs (raw regressors and scores equal to 1e-4). Licence and
model-card references: ``emovid/weights/LICENSE-blazeface.txt``.

Post-processing follows MediaPipe's face-detection graphs:

* SSD anchors with centres at cell centres and a fixed unit size: short range 896 (strides 8, 16, 16, 16; 2 anchors
  per cell on the 16x16 grid, 6 on the 8x8 grid), full range 2304 (stride 4, one per cell of the 48x48 grid);
* box and key-point decoding with scale 128 (short) or 192 (full), scores ``sigmoid(clip(logit, -100, 100))`` kept
  from 0.5 (short) or 0.6 (full range: ``min_score_thresh`` of MediaPipe's full-range graph) up;
* *weighted* non-maximum suppression (IoU 0.3): the boxes overlapping the best one are averaged, weighted by their
  scores, and the group keeps the best score.

Frames are letterboxed to the model's input (aspect ratio kept, black borders) and boxes and key points are mapped
back to frame pixels. ``Face.landmarks`` holds the six key points as ``(x, y)`` pairs: right eye, left eye, nose
tip, mouth centre, right ear tragion, left ear tragion (the subject's right and left).
:meth:`BlazeFaceDetector.detect_batch` runs a list of frames through one forward pass on the model's device.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emovid.errors import ConfigError, ModelError
from emovid.faces.detect import Face, FaceDetector

__all__ = [
    "FULL_RANGE_BLOCKS",
    "FULL_RANGE_FPN",
    "SHORT_RANGE_BLOCKS",
    "BlazeFaceFullNet",
    "BlazeFaceDetector",
    "BlazeFaceNet",
    "decode",
    "letterbox",
    "ssd_anchors",
    "weighted_nms",
]

WEIGHTS_FILE = "blazeface_short_range.safetensors"
FULL_WEIGHTS_FILE = "blazeface_full_range.safetensors"

#: ``(in_channels, out_channels, stride)`` of the short-range model's BlazeBlocks, in graph order.
SHORT_RANGE_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (24, 24, 1),
    (24, 28, 1),
    (28, 32, 2),
    (32, 36, 1),
    (36, 42, 1),
    (42, 48, 2),
    (48, 56, 1),
    (56, 64, 1),
    (64, 72, 1),
    (72, 80, 1),
    (80, 88, 1),
    (88, 96, 2),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
)

#: Index of the block whose output feeds the stride-8 (16x16) heads; the last block feeds the stride-16 heads.
_TAP_16 = 10


class _BlazeBlock(nn.Module):
    """Depthwise 3x3 (stride 1 or 2, TFLite 'SAME' padding) + pointwise 1x1, a max-pool / zero-channel skip, then
    ReLU (BlazeFace) or a per-channel PReLU (face mesh).

    With ``mid`` it is the full-range model's *bottleneck* block: depthwise 3x3 -> 1x1 to ``mid`` channels -> ReLU
    -> depthwise 3x3 (``dw2``, stride 1) -> 1x1 to ``cout`` (``pw2``), then the same skip and activation.
    """

    def __init__(self, cin: int, cout: int, stride: int, prelu: bool = False, mid: int | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.extra = cout - cin
        self.dw = nn.Conv2d(cin, cin, 3, stride, padding=1 if stride == 1 else 0, groups=cin)
        self.pw = nn.Conv2d(cin, mid or cout, 1)
        if mid:
            self.dw2 = nn.Conv2d(mid, mid, 3, 1, padding=1, groups=mid)
            self.pw2 = nn.Conv2d(mid, cout, 1)
        self.mid = mid
        self.act = nn.PReLU(cout) if prelu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            # TFLite 'SAME' for an even input, kernel 3, stride 2: no padding before, one row/column after.
            h = self.dw(F.pad(x, (0, 1, 0, 1)))
            skip = F.max_pool2d(x, 2)
        else:
            h = self.dw(x)
            skip = x
        h = self.pw(h)
        if self.mid:
            h = self.pw2(self.dw2(F.relu(h)))
        if self.extra:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra))
        return self.act(h + skip)


class BlazeFaceNet(nn.Module):
    """The short-range BlazeFace network.

    ``forward(x [B, 3, 128, 128], RGB scaled to [-1, 1])`` returns ``(regressors [B, 896, 16], logits [B, 896, 1])``
    in MediaPipe's anchor order (the TFLite model's ``regressors`` and ``classificators`` outputs).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 5, 2, padding=0)
        self.blocks = nn.ModuleList(_BlazeBlock(*b) for b in SHORT_RANGE_BLOCKS)
        self.cls_8 = nn.Conv2d(88, 2, 1)
        self.cls_16 = nn.Conv2d(96, 6, 1)
        self.reg_8 = nn.Conv2d(88, 32, 1)
        self.reg_16 = nn.Conv2d(96, 96, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # TFLite 'SAME' for 128 px, kernel 5, stride 2: 1 before, 2 after.
        x = F.relu(self.stem(F.pad(x, (1, 2, 1, 2))))
        f8 = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == _TAP_16:
                f8 = x
        b = x.shape[0]

        def flat(t: torch.Tensor, n: int) -> torch.Tensor:
            return t.permute(0, 2, 3, 1).reshape(b, -1, n)

        reg = torch.cat([flat(self.reg_8(f8), 16), flat(self.reg_16(x), 16)], 1)
        cls = torch.cat([flat(self.cls_8(f8), 1), flat(self.cls_16(x), 1)], 1)
        return reg, cls


#: ``(in_channels, mid_channels, out_channels, stride)`` of the full-range model's bottleneck blocks, in graph order
#: (backbone 96 -> 48 -> 24 -> 12 -> 6 px maps at 192 px input).
FULL_RANGE_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (32, 8, 32, 1),
    (32, 8, 32, 1),
    (32, 12, 48, 2),
    (48, 12, 48, 1),
    (48, 16, 64, 1),
    (64, 24, 96, 2),
    (96, 32, 128, 1),
    (128, 32, 128, 1),
    (128, 36, 144, 2),
    (144, 48, 192, 1),
    (192, 64, 256, 1),
    (256, 96, 384, 2),
    (384, 96, 384, 1),
    (384, 96, 384, 1),
    (384, 96, 384, 1),
)

#: Backbone blocks whose outputs are the lateral inputs of the top-down path (48x48, 24x24, 12x12 maps).
_FULL_TAPS = (4, 7, 10)

#: The full-range top-down path, coarse to fine: ``(top_in, lateral_in, channels, mid_channels, n_blocks)`` per
#: level. Each level adds ``relu(1x1(lateral))`` and the 2x bilinear upsampling of ``relu(1x1(top))``, then runs
#: ``n_blocks`` bottleneck blocks ``(channels, mid, channels, 1)``.
FULL_RANGE_FPN: tuple[tuple[int, int, int, int, int], ...] = (
    (384, 256, 96, 48, 2),
    (96, 128, 64, 32, 2),
    (64, 64, 48, 24, 1),
)


class BlazeFaceFullNet(nn.Module):
    """The full-range BlazeFace network (MediaPipe's ``face_detection_full_range.tflite``).

    ``forward(x [B, 3, 192, 192], RGB scaled to [-1, 1])`` returns ``(regressors [B, 2304, 16], logits
    [B, 2304, 1])``: one anchor per cell of the 48x48 (stride 4) map, row by row, as the TFLite outputs.

    A 3x3 stride-2 stem, 15 bottleneck blocks (:data:`FULL_RANGE_BLOCKS`) down to 6x6, then a feature-pyramid-like
    top-down path back to 48x48 (:data:`FULL_RANGE_FPN`). TFLite's ``RESIZE_BILINEAR`` there has
    ``half_pixel_centers=True, align_corners=False``, which is ``F.interpolate(..., align_corners=False)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, padding=0)
        self.blocks = nn.ModuleList(_BlazeBlock(cin, cout, s, mid=mid) for cin, mid, cout, s in FULL_RANGE_BLOCKS)
        # Module order = the graph's convolution order (top 1x1, lateral 1x1, two blocks, per level): the converter
        # relies on it.
        self.up = nn.ModuleList()
        for top_in, lat_in, ch, mid, n in FULL_RANGE_FPN:
            level = nn.Module()
            level.top = nn.Conv2d(top_in, ch, 1)
            level.lateral = nn.Conv2d(lat_in, ch, 1)
            level.blocks = nn.ModuleList(_BlazeBlock(ch, ch, 1, mid=mid) for _ in range(n))
            self.up.append(level)
        self.cls = nn.Conv2d(48, 1, 1)
        self.reg = nn.Conv2d(48, 16, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # TFLite 'SAME' for 192 px, kernel 3, stride 2: nothing before, 1 after.
        x = F.relu(self.stem(F.pad(x, (0, 1, 0, 1))))
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _FULL_TAPS:
                taps.append(x)
        for level, lateral in zip(self.up, reversed(taps), strict=True):
            lat = F.relu(level.lateral(lateral))
            top = F.interpolate(F.relu(level.top(x)), size=lat.shape[-2:], mode="bilinear", align_corners=False)
            x = lat + top
            for block in level.blocks:
                x = block(x)
        b = x.shape[0]
        reg = self.reg(x).permute(0, 2, 3, 1).reshape(b, -1, 16)
        cls = self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, 1)
        return reg, cls


def ssd_anchors(
    input_size: int = 128,
    strides: tuple[int, ...] = (8, 16, 16, 16),
    anchors_per_layer: int = 2,
    offset: float = 0.5,
) -> np.ndarray:
    """Anchor centres ``[N, 2]`` (``x, y`` in ``[0, 1]``) as MediaPipe's ``SsdAnchorsCalculator`` makes them.

    With ``fixed_anchor_size`` every anchor is ``1 x 1``, so only the centres matter. Consecutive layers with the
    same stride share one grid, their anchors (``anchors_per_layer`` each: one aspect ratio plus the interpolated
    scale) stacked per cell; the order is grid row, column, anchor.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = (j - i) * anchors_per_layer
        cells = int(np.ceil(input_size / strides[i]))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs + offset) / cells, (ys + offset) / cells], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, n, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(out).astype(np.float32)


def decode(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, scale: float = 128.0, clip: float = 100.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, scores and key points of one image's raw outputs, in normalised ``[0, 1]`` input coordinates.

    Args:
        regressors: ``[N, 16]``: box centre offset and size (``x, y, w, h``), then six ``(x, y)`` key points.
        logits: ``[N]`` or ``[N, 1]`` score logits.
        anchors: ``[N, 2]`` anchor centres (:func:`ssd_anchors`).
        scale: the input size the regressors are expressed in.
        clip: logits are clipped to ``[-clip, clip]`` before the sigmoid.

    Returns:
        ``boxes [N, 4]`` as ``(xmin, ymin, xmax, ymax)``, ``scores [N]``, ``keypoints [N, 6, 2]``.
    """
    r = np.asarray(regressors, np.float64).reshape(-1, 16)
    a = np.asarray(anchors, np.float64).reshape(-1, 1, 2)
    pts = r[:, 4:].reshape(-1, 6, 2) / scale + a
    centre = r[:, :2] / scale + a[:, 0]
    half = r[:, 2:4] / scale / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    z = np.clip(np.asarray(logits, np.float64).reshape(-1), -clip, clip)
    return boxes, 1.0 / (1.0 + np.exp(-z)), pts


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression.

    The best remaining box and every remaining box whose IoU with it exceeds ``iou_threshold`` form a group; the
    group's box and key points are the score-weighted means of its members', its score the best one's. Repeats on
    the boxes left outside the group.

    Returns:
        ``(box (xmin, ymin, xmax, ymax), score, keypoints [K, 2])`` per group, best score first.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(boxes):
        return []
    kps = np.asarray(keypoints, np.float64).reshape(len(boxes), -1, 2)
    left = np.argsort(-scores, kind="stable")
    out = []
    while len(left):
        top = left[0]
        group = _iou(boxes[top], boxes[left]) > iou_threshold
        group[0] = True
        members = left[group]
        w = scores[members]
        total = w.sum()
        box = (boxes[members] * w[:, None]).sum(0) / total
        pts = (kps[members] * w[:, None, None]).sum(0) / total
        out.append((box, float(scores[top]), pts))
        left = left[~group]
    return out


def letterbox(rgb: np.ndarray, size: int = 128) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Resize a frame into ``size x size`` keeping its aspect ratio, centred on black borders.

    Returns:
        the ``uint8 [size, size, 3]`` image and ``(offset_x, offset_y, scale_x, scale_y)``: a point ``p`` of the
        letterboxed image is ``((p_x - offset_x) / scale_x, (p_y - offset_y) / scale_y)`` in the frame.
    """
    import cv2

    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ModelError(f"BlazeFace needs an RGB or grey frame, got shape {tuple(img.shape)}")
    h, w = img.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, min(size, round(w * s))), max(1, min(size, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
    out = np.zeros((size, size, 3), np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    out[oy : oy + nh, ox : ox + nw] = small
    return out, (float(ox), float(oy), nw / w, nh / h)


#: Per model: the network class, input size, anchors, weights file and MediaPipe's minimum score. Short range:
#: ``face_detection_short_range_common.pbtxt`` (4 layers, strides 8/16/16/16, 2 anchors per layer, score 0.5); full
#: range: ``face_detection_full_range_common.pbtxt`` (1 layer, stride 4, 1 anchor, ``min_score_thresh: 0.6``).
_MODELS: dict[str, dict] = {
    "short": {
        "net": BlazeFaceNet,
        "size": 128,
        "anchors": {"strides": (8, 16, 16, 16), "anchors_per_layer": 2},
        "weights": WEIGHTS_FILE,
        "score": 0.5,
    },
    "full": {
        "net": BlazeFaceFullNet,
        "size": 192,
        "anchors": {"strides": (4,), "anchors_per_layer": 1},
        "weights": FULL_WEIGHTS_FILE,
        "score": 0.6,
    },
}


def load_blazeface(device: str | torch.device = "cpu", model: str = "short") -> nn.Module:
    """The short- (``model="short"``) or full-range (``"full"``) network with the bundled weights, in eval mode on
    ``device``."""
    from safetensors.torch import load_file

    if model not in _MODELS:
        raise ConfigError(f"unknown BlazeFace model {model!r}; choose one of {', '.join(_MODELS)}")
    spec = _MODELS[model]
    path = importlib.resources.files("emovid").joinpath("weights", spec["weights"])
    try:
        state = load_file(str(path))
    except Exception as e:  # missing or damaged file (safetensors raises its own error type)
        raise ModelError(f"cannot read the bundled BlazeFace weights ({e}); reinstall emovid", str(path)) from e
    net = spec["net"]()
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval().to(device).to(memory_format=torch.channels_last)


@dataclass
class BlazeFaceDetector(FaceDetector):
    """Faces found by MediaPipe's BlazeFace, run in PyTorch (see the module notes).

    Args:
        model: ``"short"`` (128 px input, faces within ~2 m) or ``"full"`` (192 px input, 48x48 anchors: faces down
            to ~1/20 of the frame's long side, within ~5 m).
        score_threshold: smallest face score kept (default: MediaPipe's, 0.5 short range, 0.6 full range).
        iou_threshold: IoU above which boxes are merged by the weighted NMS (MediaPipe: 0.3).
        min_size_px: faces smaller than this (frame pixels) are dropped.
        device: where the network runs (``"cpu"``, ``"cuda"``, ...).
    """

    score_threshold: float | None = None
    iou_threshold: float = 0.3
    min_size_px: int = 0
    device: str = "cpu"
    model: str = "short"
    name: str = "blazeface"
    _net: nn.Module | None = field(default=None, init=False, repr=False)
    _anchors: np.ndarray | None = field(default=None, init=False, repr=False)
    _size: int = field(default=128, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.model not in _MODELS:
            raise ConfigError(f"unknown BlazeFace model {self.model!r}; choose one of {', '.join(_MODELS)}")
        spec = _MODELS[self.model]
        if self.score_threshold is None:
            self.score_threshold = spec["score"]
        if not 0.0 < self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold must be in (0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold < 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1), got {self.iou_threshold}")
        self._size = spec["size"]
        self._net = load_blazeface(self.device, self.model)
        self._anchors = ssd_anchors(self._size, **spec["anchors"])

    def raw(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(regressors [B, N, 16], logits [B, N])`` for letterboxed ``uint8 [B, S, S, 3]`` images (short range:
        ``S = 128, N = 896``; full range: ``S = 192, N = 2304``)."""
        x = torch.from_numpy(np.ascontiguousarray(images, np.uint8))
        dev = next(self._net.parameters()).device
        with torch.inference_mode():
            # NHWC all the way: the depthwise convolutions run 1.4x faster channels-last on CPU
            x = (x.to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
            reg, cls = self._net(x)
        return reg.float().cpu().numpy(), cls.float().cpu().numpy()[..., 0]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB (or grey) ``uint8`` frame, best score first, boxes in the frame's pixels."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """:meth:`detect` for several frames (of any sizes) in one forward pass."""
        if not frames:
            return []
        boxed = [letterbox(f, self._size) for f in frames]
        reg, logits = self.raw(np.stack([b[0] for b in boxed]))
        return [self._faces(reg[i], logits[i], boxed[i][1]) for i in range(len(frames))]

    def _faces(self, reg: np.ndarray, logits: np.ndarray, geom: tuple[float, float, float, float]) -> list[Face]:
        size = float(self._size)
        boxes, scores, pts = decode(reg, logits, self._anchors, scale=size)
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        ox, oy, sx, sy = geom
        faces = []
        for box, score, kp in weighted_nms(boxes[keep], scores[keep], pts[keep], self.iou_threshold):
            x0, y0, x1, y1 = (box * size - (ox, oy, ox, oy)) / (sx, sy, sx, sy)
            if max(x1 - x0, y1 - y0) < self.min_size_px:
                continue
            fk = (kp * size - (ox, oy)) / (sx, sy)
            marks = tuple(round(float(v), 2) for v in fk.reshape(-1))
            box_xywh = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
            faces.append(Face(box_xywh, round(float(score), 4), "blazeface", marks))
        return faces
