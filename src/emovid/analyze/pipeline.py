"""Video, image or folder in; per-face emotions over time out (``emovid analyze``).

For each input:

1. frames: a video is streamed with :meth:`emovid.video.VideoReader.iter_at_rate` (one frame in memory at a time,
   frames larger than ``max_side`` are downscaled by the decoder); an image is one frame at ``t = 0``;
2. faces: detected in every sampled frame (:mod:`emovid.faces.detect`) and tracked across them
   (:class:`emovid.faces.track.IoUTracker`), so each face carries a track id;
3. emotions: every face is cropped the way the model expects (:meth:`EmotionClassifier.crop`) and the crops go
   through the model in batches of ``batch_size``, across frame boundaries;
4. results: a dict in the schema of :func:`analyze_file`, written as JSON, CSV, a strip of face
   thumbnails and one HTML report for the run by :mod:`emovid.analyze.report`.

:func:`analyze_inputs` runs a list of files and folders (recursively), mirrors relative paths in the output names,
skips inputs whose JSON exists (resume), records failures in ``failures.jsonl`` and carries on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emovid.analyze.classifier import FER_LABELS, EmotionClassifier, load_personality_predictor
from emovid.analyze.inputs import IMAGE_EXTENSIONS, InputItem, _kind, collect_inputs
from emovid.errors import ConfigError, EmovidError
from emovid.faces.crops import crop_square, square_box
from emovid.faces.detect import DEFAULT_DETECTOR, FaceDetector, create_detector
from emovid.faces.track import IoUTracker
from emovid.utils.prefetch import prefetch

THUMB_SIZE = 96
MAX_THUMBS = 8


class UnreadableImageError(EmovidError):
    """An image file that OpenCV cannot decode."""


@dataclass
class AnalyzeOptions:
    """Settings of an analysis run.

    Attributes:
        fps: frames analysed per second of video.
        batch_size: face crops per forward pass.
        detector: detector preset (:data:`emovid.faces.DETECTORS`) or a detector object.
        redetect_every: Haar detectors search the whole frame every this many analysed frames and, in between,
            only at the sizes of the faces already found (:class:`emovid.faces.detect.TrackingDetector`; same
            boxes); 1 = full search on every frame. A face of another size that appears beside an already tracked
            one is picked up at the next full search. BlazeFace and YuNet search every frame in one pass, except
            with ``landmarks="full"``: then any detector searches every this many frames and the face mesh follows
            the faces in between (:class:`emovid.faces.mesh_track.MeshFollower`).
        max_side: frames whose longer side exceeds this are decoded downscaled (boxes are reported in the
            original video's pixels).
        progress: show progress bars (stderr).
        overwrite: recompute inputs whose JSON already exists.
        strict: a damaged video (frames missing, decoder errors) fails instead of being analysed with a warning.
        smooth: per-track temporal smoothing of the emotion probabilities, in seconds: each face's probabilities
            averaged over a centred window this wide over that face's samples
            (:func:`emovid.analyze.temporal.smooth_probs`), written beside the raw ones as ``emotions_smoothed``
            and used for the segments; 0 = off.
        min_segment: shortest run of one dominant emotion kept as a segment of its own, in seconds; shorter runs
            join a neighbour (:func:`emovid.analyze.temporal.emotion_segments`).
        landmarks: ``"detector"``: each face's ``landmarks`` are the detector's key points (if it gives any);
            ``"full"``: MediaPipe's 468-point face mesh (:class:`emovid.faces.facemesh.FaceMesh`, ``[x, y, z]``
            in input pixels) and a ``pose`` from it (:func:`emovid.faces.facemesh.head_pose`) for every face.
        align: crop faces upright and scaled by their eye distance (:func:`emovid.faces.crops.align_crop`) for the
            expression model, instead of along the box; off by default: on real labelled faces it did not beat the
            box crop for the bundled model (BENCHMARKS.md "expressions_real").
        flip: average each face's probabilities with those of its mirror image (2x the model's work); off by
            default for the same reason.
    """

    fps: float = 5.0
    batch_size: int = 64
    detector: str | FaceDetector = DEFAULT_DETECTOR
    redetect_every: int = 5
    max_side: int = 1280
    progress: bool = True
    overwrite: bool = False
    strict: bool = False
    smooth: float = 0.0
    min_segment: float = 1.0
    landmarks: str = "detector"
    align: bool = False
    flip: bool = False

    def __post_init__(self) -> None:
        if not self.fps > 0 or not math.isfinite(self.fps):
            raise ConfigError(f"--fps must be a positive number, got {self.fps}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.redetect_every < 1:
            raise ConfigError(f"--redetect-every must be at least 1, got {self.redetect_every}")
        if not self.smooth >= 0 or not math.isfinite(self.smooth):
            raise ConfigError(f"--smooth must be a number of seconds >= 0 (0 = off), got {self.smooth}")
        if not self.min_segment >= 0 or not math.isfinite(self.min_segment):
            raise ConfigError(f"--min-segment must be a number of seconds >= 0, got {self.min_segment}")
        if self.landmarks not in ("detector", "full"):
            raise ConfigError(f"--landmarks must be 'detector' or 'full', got {self.landmarks!r}")


#: Frames per detector call when the detector runs on a GPU (on CPU one frame at a time is as fast, and keeps
#: decoding, detection and the expression model overlapped).
GPU_DETECT_BATCH = 16


def _detect_batch_size(det: Any) -> int:
    device = str(getattr(det, "device", "cpu") or "cpu")
    return GPU_DETECT_BATCH if hasattr(det, "detect_batch") and not device.startswith("cpu") else 1


def _batched_detections(source: Iterable, det: Any, size: int) -> Iterator[tuple]:
    """``(index, t, rgb, faces)`` for the frames of ``source``, detected ``size`` frames per ``detect_batch`` call."""
    chunk: list[tuple] = []
    for item in source:
        chunk.append(item)
        if len(chunk) >= size:
            yield from ((*c, f) for c, f in zip(chunk, det.detect_batch([c[2] for c in chunk]), strict=True))
            chunk = []
    if chunk:
        yield from ((*c, f) for c, f in zip(chunk, det.detect_batch([c[2] for c in chunk]), strict=True))


def _thumbnail(rgb: np.ndarray, box: Sequence[float], landmarks: Any = None) -> np.ndarray:
    """The report's face thumbnail, with the face's key points (or every 8th mesh point) drawn as dots."""
    import cv2

    thumb = crop_square(rgb, box, THUMB_SIZE, margin=0.15, interpolation="area")
    if landmarks is None:
        return thumb
    pts = np.asarray(landmarks, np.float64)
    pts = pts.reshape(-1, 2) if pts.ndim == 1 else pts[:, :2]
    if len(pts) >= 468:
        pts = pts[::8]
    x0, y0, side = square_box(tuple(box), 0.15)
    k = THUMB_SIZE / max(side, 1)
    for x, y in pts:
        if math.isfinite(x) and math.isfinite(y):
            cv2.circle(thumb, (int(round((x - x0) * k)), int(round((y - y0) * k))), 1, (0, 255, 120), -1, cv2.LINE_AA)
    return thumb


# ---- one input ----------------------------------------------------------------------------------------------


@dataclass
class _TrackStat:
    count: int = 0
    best: float = -1.0
    thumb: np.ndarray | None = None
    prob_sum: np.ndarray | None = None


@dataclass
class Analysis:
    """The result of one input: the JSON-ready dict and face thumbnails ``[(track id, RGB crop, label)]``.

    Besides the dict (``result``, schema in :func:`analyze_file`), a table view like Py-Feat's ``Fex`` frame:
    :meth:`rows` gives one dict per frame and face, with the columns of the CSV (:meth:`columns`), and
    :meth:`to_pandas` the same as a ``pandas.DataFrame``.

    >>> res = emovid.analyze_video("talk.mp4")                   # doctest: +SKIP
    >>> res.summary["segments"][0]                               # doctest: +SKIP
    {'track': 0, 'emotion': 'sad', 'start': 0.0, 'end': 7.2}
    >>> res.to_pandas().groupby("track")["happy"].mean()         # doctest: +SKIP
    """

    result: dict
    thumbnails: list[tuple[int, np.ndarray, str]] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        """``result["summary"]``: counts, mean and dominant emotions, main face, segments."""
        return self.result["summary"]

    def columns(self) -> list[str]:
        """The table's columns: ``t, frame, face, track, x, y, w, h, score``, the emotions, then those present.

        See :func:`emovid.analyze.tables.result_columns`.
        """
        from emovid.analyze.tables import result_columns

        return result_columns(self.result)

    def rows(self, faces_only: bool = False) -> list[dict]:
        """One dict per sampled frame and face (the rows of ``KEY.csv``; missing values are ``None``).

        Args:
            faces_only: leave out the one row of each frame without a face.
        """
        from emovid.analyze.tables import result_rows

        return result_rows(self.result, faces_only=faces_only)

    def to_pandas(self, faces_only: bool = False):
        """:meth:`rows` as a ``pandas.DataFrame`` (``None`` becomes ``NaN`` in number columns).

        Raises:
            EmovidError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise EmovidError(
                "to_pandas() needs pandas, which is not installed: pip install pandas (or 'emovid[tables]')"
            ) from None
        return pd.DataFrame(self.rows(faces_only=faces_only), columns=self.columns())


AnalysisResult = Analysis


def _image_frames(path: Path) -> Iterator[tuple[int, float, np.ndarray]]:
    import cv2

    data = np.fromfile(str(path), np.uint8)  # np.fromfile + imdecode copes with non-ASCII paths
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UnreadableImageError("cannot be decoded as an image (corrupt or unsupported format)", path)
    yield 0, 0.0, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def analyze_file(
    path: str | os.PathLike,
    classifier: EmotionClassifier,
    options: AnalyzeOptions | None = None,
    detector: FaceDetector | None = None,
    kind: str | None = None,
    personality: Callable[[str], dict] | None = None,
    predictors: Sequence[Any] = (),
    mesh: Any = None,
) -> Analysis:
    """Faces and emotions of one video or image.

    Pass ``detector`` (and, with ``options.landmarks == "full"``, ``mesh``: a
    :class:`~emovid.faces.facemesh.FaceMesh`) to reuse them over many inputs; otherwise they are built per call.

    Returns an :class:`Analysis` whose ``result`` is::

        {"input": str, "kind": "video"|"image", "duration_s": float, "fps_analyzed": float, "model": str,
         "weights": str|null, "detector": str, "labels": [...],
         "smooth_s": float,  # only with smoothing (options.smooth > 0)
         "frames": [{"t": float, "frame": int,
                     "faces": [{"box": [x, y, w, h], "score": float, "track": int,
                                "emotions": {label: p, ...},
                                "emotions_smoothed": {label: p, ...},  # only with smoothing: over the track
                                "landmarks": [[x, y], ...],  # only from detectors that give them, or
                                # with options.landmarks == "full": the 468-point face mesh, [[x, y, z], ...]
                                "pose": {"yaw", "pitch", "roll"}}]}],  # degrees; only from detectors with it
         "summary": {"faces_found": int,        # distinct faces (tracks)
                     "detections": int,         # faces over all frames
                     "frames_analyzed": int, "frames_with_face": int,
                     "dominant_emotion": str|null,   # argmax of emotions_mean; null without any face
                     "emotions_mean": {label: p|null},  # mean over every detected face
                     "main_face": {"track", "frames", "dominant_emotion", "emotions_mean"}|null,
                     # runs of one dominant emotion per track (on the smoothed values with smoothing), runs
                     # shorter than options.min_segment merged into a neighbour; seconds; sorted by track, start
                     "segments": [{"track": int, "emotion": str, "start": float, "end": float}, ...],
                     "personality": {...},     # only with a fusion/personality checkpoint
                     "tasks": {TASK: {...}}}}  # with --checkpoint runs: their emovid.predict records

    Raises:
        EmovidError: the input cannot be read (not a video, corrupt, unreadable image, ...).
    """
    import cv2
    from tqdm import tqdm

    from emovid.video import VideoReader

    opts = options or AnalyzeOptions()
    det = detector or create_detector(opts.detector, redetect_every=opts.redetect_every)
    grey_input = bool(getattr(det, "grey_input", False))
    if opts.landmarks == "full":
        from emovid.faces.facemesh import FaceMesh, head_pose
        from emovid.faces.mesh_track import MeshFollower

        mesh = mesh if mesh is not None else FaceMesh()
        follower = MeshFollower(det, mesh, redetect_every=opts.redetect_every)
    else:
        mesh = follower = None
    reset = getattr(det, "reset", None)
    if reset is not None:
        reset()  # tracking detectors start each input from a full-frame search
    from emovid.utils.paths import check_regular_file

    path = Path(check_regular_file(path, "video or image"))
    kind = kind or _kind(path)
    labels = classifier.labels
    extra_names = tuple(getattr(classifier, "extra_names", ()))
    t0 = time.perf_counter()

    frames_out: list[dict] = []
    pending: list[tuple[dict, np.ndarray, int]] = []
    tracker = IoUTracker(keep_finished=False)
    stats: dict[int, _TrackStat] = {}
    prob_sum = np.zeros(len(labels), np.float64)
    n_faces = 0

    def flush() -> None:
        nonlocal n_faces, prob_sum
        if not pending:
            return
        probs, extras = classifier.predict_all([c for _, c, _ in pending])
        for (face, _, tid), p, ex in zip(pending, probs, extras, strict=False):
            face["emotions"] = {lab: round(float(v), 5) for lab, v in zip(labels, p, strict=False)}
            for name, v in zip(extra_names, ex, strict=False):  # valence / arousal of models that give them
                face[name] = round(float(v), 5)
            prob_sum += p
            st = stats.get(tid)
            if st is not None:
                st.prob_sum = p.astype(np.float64) if st.prob_sum is None else st.prob_sum + p
        n_faces += len(pending)
        pending.clear()

    reader = None
    source: Iterable = ()
    duration = 0.0
    scale = 1.0
    try:
        if kind == "image":
            source = _image_frames(path)
            total = 1
        else:
            reader = VideoReader(path)
            info = reader.info
            duration = float(info.duration)
            size = None
            if opts.max_side and max(info.width, info.height) > opts.max_side:
                scale = opts.max_side / max(info.width, info.height)
                size = (max(2, round(info.height * scale)), max(2, round(info.width * scale)))
            # Decoding runs one frame ahead in a thread, overlapping detection and the model.
            source = prefetch(reader.iter_at_rate(opts.fps, size=size), depth=4)
            total = max(1, int(math.ceil(duration * opts.fps)))
        bar = tqdm(total=total, desc=path.name[:30], unit="frame", leave=False, disable=not opts.progress or total < 2)
        batched = follower is None and _detect_batch_size(det) > 1
        frames_in = _batched_detections(source, det, _detect_batch_size(det)) if batched else source
        for step, item in enumerate(frames_in):
            index, t, rgb = item[:3]
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            meshes = None
            if batched:  # detected a batch of frames at a time on the detector's GPU
                faces = item[3]
            elif follower is not None:  # the face mesh follows faces between detector searches
                faces, meshes = follower.step(rgb, grey if grey_input else None)
            else:
                faces = det.detect(grey if grey_input else rgb)
            ids = tracker.update(step, t, faces)
            rec: dict = {"t": round(float(t), 4), "frame": int(index), "faces": []}
            for k, (face, (tid, _smoothed)) in enumerate(zip(faces, ids, strict=False)):
                # Boxes and crops use the detector's raw box: smoothing lags behind fast moves on sparse samples.
                box = face.box
                out_box = [int(round(v / scale)) for v in box]
                fd = {"box": out_box, "score": round(float(face.score), 4), "track": int(tid), "emotions": {}}
                if face.landmarks is not None:  # detectors that give them (YuNet): [[x, y], ...] in input pixels
                    pts = face.landmarks
                    fd["landmarks"] = [
                        [round(pts[i] / scale, 1), round(pts[i + 1] / scale, 1)] for i in range(0, len(pts), 2)
                    ]
                pose = _pose(getattr(face, "pose", None))
                if meshes is not None:
                    fd["landmarks"] = [[round(float(v) / scale, 1) for v in p] for p in meshes[k]]
                    if pose is None:
                        fit = head_pose(meshes[k], (rgb.shape[1], rgb.shape[0]))
                        pose = fit if all(math.isfinite(v) for v in fit.values()) else None
                if pose is not None:  # head pose from detectors that estimate it; never made up
                    fd["pose"] = pose
                rec["faces"].append(fd)
                marks = meshes[k] if meshes is not None else face.landmarks  # eyes for aligned crops
                pending.append((fd, classifier.crop(rgb, grey, box, marks, face.kind), tid))
                st = stats.setdefault(tid, _TrackStat())
                st.count += 1
                quality = face.score * math.sqrt(box[2] * box[3])
                if quality > st.best:
                    st.best = quality
                    st.thumb = _thumbnail(rgb, box, marks)
                if len(stats) > 4 * MAX_THUMBS:  # bounded memory on long, crowded videos: forget the rarest faces
                    _prune(stats, keep=2 * MAX_THUMBS)
            frames_out.append(rec)
            if len(pending) >= opts.batch_size:
                flush()
            bar.update(1)
        flush()
        bar.close()
        damage = reader.damage if reader is not None else None
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # stops the decoding thread before its video is closed
        if reader is not None:
            reader.close()

    step = 1.0 / opts.fps if kind == "video" else 0.0
    segments = _smooth_and_segment(frames_out, labels, opts.smooth, opts.min_segment, step, duration or None)
    frames_with_face = sum(1 for f in frames_out if f["faces"])
    if n_faces:
        mean = prob_sum / n_faces
        emotions_mean = {lab: round(float(v), 5) for lab, v in zip(labels, mean, strict=False)}
        dominant = labels[int(np.argmax(mean))]
    else:
        emotions_mean = {lab: None for lab in labels}
        dominant = None
    main = None
    if stats:
        mid, mst = max(stats.items(), key=lambda kv: (kv[1].count, -kv[0]))
        if mst.prob_sum is not None:
            m = mst.prob_sum / mst.count
            main = {
                "track": int(mid),
                "frames": int(mst.count),
                "dominant_emotion": labels[int(np.argmax(m))],
                "emotions_mean": {lab: round(float(v), 5) for lab, v in zip(labels, m, strict=False)},
            }
    summary = {
        "faces_found": int(tracker.num_tracks),
        "detections": int(n_faces),
        "frames_analyzed": len(frames_out),
        "frames_with_face": int(frames_with_face),
        "dominant_emotion": dominant,
        "emotions_mean": emotions_mean,
        "main_face": main,
        "segments": segments,
    }
    for name in extra_names:  # valence / arousal: mean over all faces, and over the main face
        vals = [f[name] for fr in frames_out for f in fr["faces"] if name in f]
        summary[f"{name}_mean"] = round(float(np.mean(vals)), 5) if vals else None
        if main is not None:
            mine = [f[name] for fr in frames_out for f in fr["faces"] if name in f and f["track"] == main["track"]]
            main[f"{name}_mean"] = round(float(np.mean(mine)), 5) if mine else None
    if personality is not None:  # traits come from a video's face sequence; an image has none
        summary["personality"] = personality(str(path)) if kind == "video" else None
    if predictors:  # trained runs score the whole video (an image has no clips to score)
        from emovid.data.readers import FIV2_TRAITS

        tasks: dict[str, Any] = {}
        for p in predictors:
            if kind != "video":
                tasks[p.task] = None
                continue
            rec = p.predict_one(path, timeline=True)
            tasks[p.task] = {k: v for k, v in rec.items() if k not in ("video", "damaged")}
        summary["tasks"] = tasks
        if "personality" not in summary:
            traits = next((t for t in tasks.values() if t and "openness" in t), None)
            if traits is not None or any(p.task in ("personality", "fusion") for p in predictors):
                summary["personality"] = {k: traits[k] for k in FIV2_TRAITS} if traits and traits.get("faces") else None
    result = {
        "input": str(path),
        "kind": kind,
        "duration_s": round(duration, 4),
        "fps_analyzed": float(opts.fps) if kind == "video" else 0.0,
        "model": classifier.name,
        "weights": classifier.weights,
        "detector": getattr(det, "name", type(det).__name__),
        "labels": list(labels),
        **({"smooth_s": float(opts.smooth)} if opts.smooth > 0 else {}),
        "frames": frames_out,
        "summary": summary,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    if damage:  # what could not be decoded: the analysis covers the frames that could
        result["damaged"] = damage
    thumbs = []
    for tid, st in sorted(stats.items(), key=lambda kv: (-kv[1].count, kv[0]))[:MAX_THUMBS]:
        if st.thumb is None:
            continue
        label = labels[int(np.argmax(st.prob_sum))] if st.prob_sum is not None else ""
        thumbs.append((tid, st.thumb, label))
    return Analysis(result, thumbs)


def _pose(pose: Any) -> dict | None:
    """``{"yaw", "pitch", "roll"}`` (degrees) from a detector's ``Face.pose`` (a mapping or 3 numbers), or None."""
    if pose is None:
        return None
    vals = [pose.get(k) for k in ("yaw", "pitch", "roll")] if isinstance(pose, dict) else list(pose)[:3]
    if len(vals) != 3 or any(v is None or not math.isfinite(float(v)) for v in vals):
        return None
    return {k: round(float(v), 2) for k, v in zip(("yaw", "pitch", "roll"), vals, strict=True)}


def _smooth_and_segment(
    frames: list[dict], labels: Sequence[str], smooth: float, min_segment: float, step: float, end: float | None
) -> list[dict]:
    """Per track: ``emotions_smoothed`` on its faces (``smooth > 0``) and its segments (``summary["segments"]``)."""
    from emovid.analyze.temporal import emotion_segments, smooth_probs, track_samples

    segments = []
    for tid, (t, p, faces) in sorted(track_samples(frames, labels).items()):
        if smooth > 0:
            p = smooth_probs(t, p, smooth)
            for face, row in zip(faces, p, strict=True):
                face["emotions_smoothed"] = {lab: round(float(v), 5) for lab, v in zip(labels, row, strict=True)}
        for seg in emotion_segments(t, p, labels, min_s=min_segment, step=step, end=end):
            segments.append({"track": int(tid), **seg})
    return segments


def analyze_video(
    path: str | os.PathLike,
    model: str = "fer_mini_xception",
    pretrained: str | bool | None = True,
    device: str = "cpu",
    classifier: EmotionClassifier | None = None,
    **options: Any,
) -> Analysis:
    """Analyse one video (or image) from Python: ``emovid.analyze_video("talk.mp4", smooth=0.5).to_pandas()``.

    Nothing is written; the returned :class:`Analysis` holds the JSON-ready ``result`` (schema in
    :func:`analyze_file`), ``rows()`` (one dict per frame and face, the CSV's columns) and ``to_pandas()``.

    Args:
        path: a video or image file.
        model: registered face-emotion classifier (as ``emovid analyze --model``).
        pretrained: its weights (as ``--pretrained``; ``True``: the bundled ones).
        device: torch device.
        classifier: an :class:`EmotionClassifier` to reuse across calls (then ``model``, ``pretrained`` and
            ``device`` are not used).
        **options: :class:`AnalyzeOptions` fields (``fps``, ``detector``, ``smooth``, ``min_segment``, ...);
            ``progress`` defaults to off.

    Raises:
        ConfigError: an unknown or bad option.
        EmovidError: the input cannot be read.
    """
    import dataclasses

    known = {f.name for f in dataclasses.fields(AnalyzeOptions)}
    bad = sorted(set(options) - known)
    if bad:
        raise ConfigError(f"unknown analyze option {bad[0]!r}; known: {', '.join(sorted(known))}")
    opts = AnalyzeOptions(**{"progress": False, **options})
    clf = classifier or EmotionClassifier(model, pretrained=pretrained, device=device, align=opts.align, flip=opts.flip)
    return analyze_file(path, clf, opts)


def _prune(stats: dict[int, _TrackStat], keep: int) -> None:
    order = sorted(stats, key=lambda k: (stats[k].count, k), reverse=True)
    for k in order[keep:]:
        del stats[k]


def __getattr__(name: str):
    # analyze_inputs lives in emovid.analyze.batch (it imports this module); kept reachable from here.
    if name in ("analyze_inputs", "AnalyzeJob"):
        from emovid.analyze import batch

        return getattr(batch, name)
    raise AttributeError(name)


__all__ = [
    "FER_LABELS",
    "IMAGE_EXTENSIONS",
    "Analysis",
    "AnalysisResult",
    "AnalyzeOptions",
    "EmotionClassifier",
    "InputItem",
    "UnreadableImageError",
    "analyze_file",
    "analyze_video",
    "collect_inputs",
    "load_personality_predictor",
]
