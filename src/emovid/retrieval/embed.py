"""What goes into a video index: the list of videos, and the two ways to embed them.

* :class:`ZeroShotEmbedder` (``--zero-shot``, the offline default): works on a fresh machine with no trained
  model. A video's vector is built from what can be read offline — its captions, when a manifest gives them,
  embedded with all-MiniLM-L6-v2 (:mod:`emovid.retrieval.text`), plus an emotion term: the emotion prompts
  (:data:`~emovid.retrieval.text.EMOTION_PROMPTS`) weighted by the video's emotion distribution. That
  distribution comes from the captions' Plutchik scores when given, else from ``emovid analyze``'s Python API when
  it is installed (Haar face detection + the bundled FER model ``fer_mini_xception``), else — and for videos
  where it finds no face — from ``fer_mini_xception`` run on sampled whole frames (right only when a face fills
  the frame). Each row records its
  ``emotion_source``. A query like "an angry person" then lands next to the videos whose emotion is anger.
* :class:`ModelEmbedder` (``--model CHECKPOINT``): a trained ``retrieval`` checkpoint; videos go through its
  CLIP-ViP encoder, queries through its text tower with the emotion embedding.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emovid.batch import require_inputs, scan_folder
from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.engine import Input, Job
from emovid.errors import ConfigError, EmovidError, InputNotFoundError, display_path
from emovid.video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

VIDEO_EXTS = VIDEO_EXTENSIONS  # the one list: what analyze, extract and faces embed read is indexed too
#: FER2013 classes → Plutchik emotions (neutral has none).
FER_TO_PLUTCHIK = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness"}
FER_TO_PLUTCHIK["surprise"] = "surprise"


@dataclass
class VideoItem:
    """A video to index: its file and what a manifest says about it."""

    path: Path
    video_id: str
    captions: list[str] = field(default_factory=list)
    emotions: list[float] | None = None  # 8 Plutchik scores from the captions, if given
    duration: float | None = None

    @property
    def video_path(self) -> Path:  # the record interface of emovid.data (ClipLoader reads it)
        return self.path


def collect_videos(
    videos: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    video_root: str | os.PathLike | None = None,
    ignored: list[tuple[Path, str]] | None = None,
) -> tuple[list[VideoItem], list[str]]:
    """Videos to index and the root folders the index may serve them from.

    Args:
        videos: a folder, searched recursively for video files.
        manifest: the CLIP-ViP recipe caption JSON, MSR-VTT captions (``.csv`` / ``{"sentences"}`` JSON), or JSON lines
            ``{"video": PATH, "caption": TEXT?}``; several captions of one video are kept together.
        video_root: the folder manifest paths are relative to (default: the manifest's folder).
        ignored: if given, receives folder entries named like videos that are not regular files (never opened).

    Raises:
        InputNotFoundError: the folder or manifest does not exist, or holds no videos.
        ConfigError: neither or both of ``videos`` and ``manifest``.
    """
    if (videos is None) == (manifest is None):
        raise ConfigError("give exactly one of --videos DIR or --manifest FILE")
    if videos is not None:
        root = Path(videos)
        if not root.is_dir():
            raise InputNotFoundError(root, "folder")
        scan = scan_folder(root, VIDEO_EXTS)
        files = scan.files
        require_inputs(files, root, f"video files ({', '.join(VIDEO_EXTS)})", scan.ignored)
        if ignored is not None:
            ignored.extend(scan.ignored)
        items = [VideoItem(p.resolve(), str(p.relative_to(root).with_suffix(""))) for p in files]
        return items, [str(root.resolve())]
    from emovid.utils.paths import check_regular_file

    mpath = Path(check_regular_file(manifest, "manifest"))
    root = Path(video_root) if video_root is not None else mpath.parent
    by_path: dict[Path, VideoItem] = {}
    if mpath.suffix.lower() == ".jsonl":
        with open(mpath, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    p = (root / rec["video"]).resolve()
                except (ValueError, KeyError, TypeError, RecursionError) as e:
                    raise ConfigError(
                        f'{display_path(mpath)}:{n}: expected {{"video": PATH, "caption": TEXT}} ({e})'
                    ) from e
                item = by_path.setdefault(p, VideoItem(p, str(rec.get("video_id") or Path(rec["video"]).stem)))
                if rec.get("caption"):
                    item.captions.append(str(rec["caption"]))
    else:
        from emovid.data.readers.captions import captions_format, read_emotion_captions, read_msrvtt_captions

        if captions_format(mpath) == "emotion":
            records = read_emotion_captions(mpath, root)
        else:
            records = read_msrvtt_captions(mpath, root)
        for r in records:
            p = Path(r.video_path).resolve()
            item = by_path.setdefault(p, VideoItem(p, str(r.video_id), duration=r.duration))
            item.captions.append(r.caption)
            if r.plutchik:
                prev = np.zeros(8) if item.emotions is None else np.asarray(item.emotions)
                item.emotions = list(prev + np.asarray(r.plutchik))
    if not by_path:
        raise ConfigError("the manifest lists no videos", mpath)
    return list(by_path.values()), [str(root.resolve())]


def normalise_emotions(scores: np.ndarray | list[float] | None) -> dict[str, float]:
    """8 non-negative scores → ``{emotion: share}`` summing to 1 (all zero when none are positive)."""
    s = np.zeros(8) if scores is None else np.clip(np.asarray(scores, np.float64), 0, None)
    total = s.sum()
    s = s / total if total > 0 else s
    return {e: round(float(x), 4) for e, x in zip(PLUTCHIK_EMOTIONS, s, strict=True)}


class FrameEmotionReader:
    """Per-video Plutchik emotions: ``emovid analyze`` (face detection + FER) when available, else FER on frames.

    ``reader(path)`` returns ``(8 scores, source)``; the source says where the scores came from, per video:
    ``emovid analyze (...)`` when faces were found, ``fer_mini_xception on whole frames ...`` otherwise.
    """

    def __init__(self, frames: int = 8, device: str = "cpu", fps: float = 2.0):
        self.frames = frames
        self.device = device
        self.fps = fps
        self._fer = None
        self._analyze = None
        try:
            from emovid.analyze import AnalyzeOptions, EmotionClassifier, analyze_file
            from emovid.faces.detect import create_detector
        except ImportError:  # a build without the analyze pipeline
            self.source = "fer_mini_xception on whole frames (emovid analyze not installed)"
        else:
            self._analyze = (analyze_file, EmotionClassifier, AnalyzeOptions, create_detector)
            self.source = "emovid analyze (face detection + fer_mini_xception), else whole frames"
        # Built on first use and kept for every later video of this reader (one per run, or per worker process):
        # the Haar detector re-parses its cascade files when created, which costs more than detecting in a video.
        self._classifier = None
        self._detector = None
        self._options = None
        self.last_damage: dict | None = None  # damage record of the video read by the latest call

    def __getstate__(self) -> dict:
        # OpenCV cascades do not pickle: a spawned worker builds its own detector on its first video.
        return {**self.__dict__, "_detector": None}

    def __call__(self, path: Path) -> tuple[list[float], str]:
        self.last_damage = None
        if self._analyze is not None:
            analyze_file, classifier_cls, options_cls, create_detector = self._analyze
            if self._classifier is None:
                self._classifier = classifier_cls("fer_mini_xception", device=self.device)
            if self._options is None:
                self._options = options_cls(fps=self.fps, progress=False)
            opts = self._options
            if self._detector is None:
                self._detector = create_detector(opts.detector, redetect_every=opts.redetect_every)
            result = analyze_file(path, self._classifier, opts, detector=self._detector).result
            self.last_damage = result.get("damaged")
            summary = result["summary"]
            mean = summary.get("emotions_mean") or {}
            if summary.get("dominant_emotion") is not None:
                out = np.zeros(8)
                for name, p in mean.items():
                    if name in FER_TO_PLUTCHIK and p is not None:
                        out[PLUTCHIK_EMOTIONS.index(FER_TO_PLUTCHIK[name])] += float(p)
                return list(out), f"emovid analyze ({summary.get('faces_found', 0)} face(s), fer_mini_xception)"
            return self._fer_frames(path), "fer_mini_xception on whole frames (no face detected)"
        return self._fer_frames(path), "fer_mini_xception on whole frames (no face detector)"

    def _fer_frames(self, path: Path) -> list[float]:
        import torch

        from emovid.faces.crops import face_tensor
        from emovid.models import create_model
        from emovid.models.fer import FER_LABELS
        from emovid.video import VideoReader
        from emovid.video.sampling import uniform_indices

        if self._fer is None:
            self._fer = create_model("fer_mini_xception", pretrained=True).eval().to(self.device)
        with VideoReader(path, threads=1) as r:
            idx = uniform_indices(len(r), self.frames)
            frames = r.get_frames(list(idx), missing="nearest")
            self.last_damage = self.last_damage or r.damage
        crops = []
        for f in frames:
            h, w = f.shape[:2]
            s = min(h, w)
            crops.append(f[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])  # the centre square
        x = face_tensor(crops, self._fer.pretrained_cfg, self.device)  # grey, resized and normalised for the model
        with torch.inference_mode():
            p = self._fer(x).softmax(-1).mean(0).cpu().numpy()
        out = np.zeros(8)
        for name, q in zip(FER_LABELS, p, strict=True):
            if name in FER_TO_PLUTCHIK:
                out[PLUTCHIK_EMOTIONS.index(FER_TO_PLUTCHIK[name])] = float(q)
        return list(out)


def _probe_duration(path: Path) -> float | None:
    from emovid.video import probe

    try:
        return round(float(probe(path).duration), 3)
    except (EmovidError, AttributeError, TypeError):
        return None


class ZeroShotEmbedder:
    """Offline zero-shot vectors: MiniLM caption embeddings + an emotion-prompt term (see the module docs)."""

    mode = "zero-shot"

    def __init__(self, emotion_weight: float = 1.0, video_emotions: bool = True, device: str = "cpu"):
        from emovid.retrieval.text import MINILM_PACKAGE, emotion_prompt_matrix, get_minilm

        self.text = get_minilm(device)
        self.prompts = emotion_prompt_matrix(device)
        self.emotion_weight = emotion_weight
        self.reader = FrameEmotionReader(device=device) if video_emotions else None
        self.dim = self.text.dim
        self.encoder_info = {
            "mode": self.mode,
            "text": f"{self.text.name} (PyPI {MINILM_PACKAGE})",
            "emotion_weight": emotion_weight,
            "video_emotions": self.reader.source if self.reader else "captions only",
        }

    def describe(self) -> str:
        r = self.encoder_info
        return (
            f"mode: zero-shot (offline; text: {r['text']}; videos: captions where given + emotions from the "
            f"captions' Plutchik scores, else {r['video_emotions']})"
        )

    def embed(self, items: list[VideoItem]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        from emovid.retrieval.text import zero_shot_vector

        vecs, rows = [], []
        for it in items:
            tv, damage = None, None
            if it.captions:
                e = self.text.encode(it.captions).mean(0)
                tv = e / max(float(np.linalg.norm(e)), 1e-9)
            if it.emotions is not None and sum(it.emotions) > 0:
                emo, source = np.asarray(it.emotions, np.float64), "captions"
            elif self.reader is not None:
                emo, source = self.reader(it.path)
                emo = np.asarray(emo)
                damage = self.reader.last_damage
            else:
                emo, source = None, "none"
            vecs.append(zero_shot_vector(tv, emo, self.prompts, self.emotion_weight))
            rows.append(_row(it, emo, source, damage))
        return np.stack(vecs).astype(np.float32), rows


class ModelEmbedder:
    """Video vectors from a trained ``retrieval`` checkpoint's CLIP-ViP encoder."""

    mode = "model"

    def __init__(self, checkpoint: str | os.PathLike, video_emotions: bool = False, device: str = "cpu"):
        from emovid.data.datasets import ClipLoader
        from emovid.engine.model_dir import load_model_dir
        from emovid.models import create_transform
        from emovid.video.sampling import parse_sampler

        model, cfg, task = load_model_dir(checkpoint)
        if cfg.task != "retrieval":
            raise ConfigError(
                f"{checkpoint}: a {cfg.task!r} checkpoint; index needs one trained with the retrieval task"
            )
        self.model = model.to(device).eval()
        self.device = device
        pc = model.feature_extractor.pretrained_cfg
        sampler = parse_sampler(cfg.eval_sampler or f"center:{pc.num_frames}x{pc.frame_stride}")
        self.loader = ClipLoader(
            sampler, create_transform(pc, train=False), pc.short_side or min(pc.input_size), with_meta=True
        )
        self.reader = FrameEmotionReader(device=device) if video_emotions else None
        self.dim = int(model.head.text.output_dim)
        self.encoder_info = {
            "mode": self.mode,
            "checkpoint": str(Path(checkpoint).resolve()),
            "model": getattr(model.feature_extractor, "model_name", cfg.model),
            "emotion": model.head.text.emotion_mode,
        }

    def describe(self) -> str:
        r = self.encoder_info
        return f"mode: model (checkpoint {r['checkpoint']}; video: {r['model']}; text emotion term: {r['emotion']})"

    def embed(self, items: list[VideoItem]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        import torch

        loaded = [self.loader(it) for it in items]
        clips = torch.stack([clip for clip, _ in loaded]).to(self.device)
        with torch.inference_mode():
            v = self.model.encode_video(clips).float().cpu().numpy()
        rows = []
        for it, (_, meta) in zip(items, loaded, strict=True):
            damage = (meta or {}).get("damage")
            if it.emotions is not None and sum(it.emotions) > 0:
                emo, source = it.emotions, "captions"
            elif self.reader is not None:
                emo, source = self.reader(it.path)
                damage = damage or self.reader.last_damage
            else:
                emo, source = None, "none"
            rows.append(_row(it, emo, source, damage))
        return v.astype(np.float32), rows


def _row(it: VideoItem, emotions, source: str, damage: dict | None = None) -> dict[str, Any]:
    row = {
        "path": str(it.path),
        "video_id": it.video_id,
        "duration": it.duration if it.duration is not None else _probe_duration(it.path),
        "caption": it.captions[0] if it.captions else "",
        "captions": it.captions,
        "emotions": normalise_emotions(emotions),
        "emotion_source": source,
    }
    if damage:
        row["damaged"] = damage
    return row


class IndexJob(Job):
    """``emovid index build/add`` on the batch engine: one video = one vector + metadata row.

    Each finished video's vector and row go to the engine's journal (``manifest.jsonl`` in the index folder); at
    the end rank 0 appends those not yet in the index, in input order, and rebuilds ``index.faiss``.
    """

    name = "index"
    key = "video"

    def __init__(self, embedder, items: list[VideoItem], index, spec):
        self.embedder, self.index, self.spec = embedder, index, spec
        self.items = {str(it.path): it for it in items}
        self.order = list(self.items)

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return "vector" in entry

    def process(self, item: Input, loaded) -> dict:
        vecs, rows = self.embedder.embed([self.items[item.id]])
        return {"vector": [float(x) for x in np.asarray(vecs[0], np.float32)], "row": rows[0]}

    def damage(self, result: dict) -> dict | None:
        return result["row"].get("damaged")

    def write(self, item: Input, result: dict, out: Path) -> dict:
        return {"vector": result["vector"], "row": result["row"]}

    def finish(self, out: Path, manifest: dict, failures: dict) -> None:
        have = self.index.done()
        new = [manifest[p] for p in self.order if p in manifest and manifest[p]["row"]["path"] not in have]
        if new:
            self.index.append(np.asarray([e["vector"] for e in new], np.float32), [e["row"] for e in new])
        if len(self.index) == 0:
            first = next(iter(failures.values()), None)
            why = f"; first: {display_path(first['input'])}: {first['error']}" if first else ""
            raise EmovidError(
                f"none of the {len(self.order)} videos could be embedded, nothing to index (see "
                f"{display_path(out / 'failures.jsonl')}){why}"
            )
        self.index.finalize(self.spec)


def build_index(
    output: str | os.PathLike,
    items: list[VideoItem],
    roots: list[str],
    embedder,
    spec=None,
    batch_size: int = 16,
    progress: bool = True,
    strict: bool = False,
    ignored: list[tuple[Path, str]] | None = None,
    engine_options: dict | None = None,
) -> dict[str, Any]:
    """Embed ``items`` into the index folder ``output`` on the shared batch engine (resumable; videos already in
    the index are skipped).

    Any per-video failure is recorded in ``output/failures.jsonl`` and the build goes on; damaged videos are
    indexed with a warning and a ``damaged`` record in their row (``strict``: recorded as failures instead).

    Args:
        batch_size: unused since the build runs on the engine (one video per step); kept for callers.
        engine_options: extra :func:`emovid.engine.run` options (``devices``, ``strategy``, ...).

    Returns:
        ``{"added", "skipped_existing", "failed", "failure_records", "warnings", "count", "mode", "recorder"}``.

    Raises:
        EmovidError: not a single video could be embedded (the failures are in ``failures.jsonl``).
    """
    from emovid.engine import run as run_batch
    from emovid.retrieval.index import IndexSpec, VideoIndex

    spec = spec or IndexSpec()
    for it in items:
        if not any(Path(r) == it.path or Path(r) in it.path.parents for r in roots):
            raise ConfigError(f"{it.path} is outside the index root(s) {', '.join(roots)}; pass --video-root")
    idx = VideoIndex.create(output, embedder.dim, spec, embedder.mode, embedder.encoder_info, roots)
    have = idx.done()
    job = IndexJob(embedder, items, idx, spec)
    inputs = [Input(str(it.path), it.path) for it in items if str(it.path) not in have]
    rec = run_batch(
        job,
        inputs,
        output,
        strict=strict,
        ignored=ignored or [],
        progress=progress,
        **{"accelerator": "cpu", "devices": 1, **(engine_options or {})},
    )
    rec.total, rec.skipped = len(items), rec.skipped + len(items) - len(inputs)
    return {
        **rec.to_dict(),
        "added": rec.done,
        "skipped_existing": rec.skipped,
        "count": len(idx),
        "mode": embedder.mode,
        "recorder": rec,
    }


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, unit="video", desc="embedding", leave=False)
