"""Apply a trained run to new videos: ``emovid.load(RUN).predict_one("talk.mp4")`` gives one record of named outputs.

A run folder (``emovid train TASK ... -o RUN``) is rebuilt from its files alone (:func:`emovid.train.load_model_dir`)
and scores videos it has never seen, with its validation's preprocessing (transform, short side, channels: the eval
loader the engine builds, :func:`emovid.train._loaders`) and its task's own mapping from model outputs to named
values (:meth:`Task.infer <emovid.tasks.base.Task.infer>`), so a video scores what it scores during validation.

Records are JSON-ready dicts::

    {"video": "talk.mp4", <output>: value, ...,      # Predictor.outputs, in order
     "series": {...},                                 # only with timeline=True
     "damaged": {...}}                                # only when the reader reports damage (decoded as far as it goes)

Outputs per task (:func:`task_outputs`): ``intensity`` -> ``intensity`` (the score head's output) and
``embedding_norm`` (``||feature||``); ``vce`` -> the 27 :data:`~emovid.data.readers.VCE_EMOTIONS` (sigmoid
intensities) and ``top3`` (``;``-joined, most intense first); ``v2v`` -> ``valence`` (the preference score);
``valence_arousal`` -> ``valence``, ``arousal`` (means over the frames); ``emotion_dist`` -> the 7
:data:`~emovid.data.readers.MOSEI_CLASSES` (a distribution); ``personality`` -> the 5
:data:`~emovid.data.readers.FIV2_TRAITS`; ``fusion`` -> both, and face tasks add ``faces`` (face crops found; the
outputs are ``None`` without any). ``retrieval`` runs are refused: they are used through
``emovid index build --model RUN``.

Clips (``clips=``):

* ``None`` (default): clip tasks (intensity, vce, v2v) score the windows ``emovid extract`` embeds by default
  (:func:`emovid.extract.make_sampler`: the model's clip, a new window every clip span, the last one aligned to
  the end, one padded clip for a video shorter than a span) and average the window scores; sequence tasks
  (valence_arousal) cover every frame exactly once with their validation's clips
  (:func:`~emovid.video.sampling.covering_clips`) and average the frames.
* ``"eval"``: exactly the clips validation scores (the centre clip of ``--eval-sampler``'s default for clip tasks).
* any sampler spec (``sliding:16x4:32``, ``uniform:8``, ...).

``series`` holds per-window ``t_start``/``t_end`` (seconds) and each output for clip tasks, per-frame ``t``/``frame``
and each output for sequence tasks; face tasks give one value per video and no series.

Speed and memory: a video is decoded once, in passes of at least :data:`DECODE_SPAN` frames (each pass seeks to a
keyframe), and scored ``batch_size`` windows per forward pass, so memory holds one pass's decoded frames and one
batch of clips however long the video. A thread decodes ahead while the model runs (:meth:`Predictor.predict`:
``decode_threads`` of them, each taking whole videos). Batch engines can split the work instead:
:meth:`Predictor.decode` (CPU, in DataLoader workers; holds every window of the video) then :meth:`Predictor.score`
(the model), as ``emovid extract`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emovid.errors import ConfigError, EmovidError, InputNotFoundError, ModelError

__all__ = ["Predictions", "Predictor", "load", "task_outputs"]

DEFAULT_BATCH = 16  # windows per forward pass (emovid extract's default clip batch)
# Frames one decoding pass spans at least: each pass seeks to the keyframe before it and decodes from there, so
# short passes would decode the frames of a long GOP again and again (x264's default GOP is 250 frames).
DECODE_SPAN = 2048
PREFETCH = 2  # batches of clips each decoding thread keeps ready while the model runs


def task_outputs(task: str) -> list[str]:
    """The value columns of a task's records, in order (``video`` and ``damaged`` aside).

    Raises:
        ConfigError: unknown task.
        ModelError: a task that does not score videos (retrieval).
    """
    from emovid.tasks import get_task

    cls = get_task(task)
    if not cls.outputs:
        if task == "retrieval":
            raise ModelError(
                "a retrieval run is not scored video by video; build a search index with it: "
                "emovid index build --videos DIR -o IDX --model RUN"
            )
        raise ModelError(f"task {task!r} does not score videos")
    cols = [*cls.outputs, *cls.derived_outputs]
    if cls.uses_embeddings:
        cols.append("faces")
    return cols


def _file_sha256(path: Path) -> str:
    from emovid.utils.io import file_sha256

    return file_sha256(path)[:16]


def _run_task(run: Path) -> str:
    """The task of a run folder, read before any model is built (a retrieval run is refused cheaply)."""
    import yaml

    from emovid.train import MODEL_FILE, TRAIN_CONFIG

    if not run.exists():
        raise InputNotFoundError(run, "run folder")
    if not run.is_dir() or not (run / MODEL_FILE).is_file() or not (run / TRAIN_CONFIG).is_file():
        raise ModelError(
            f"not a trained run (needs {MODEL_FILE} and {TRAIN_CONFIG}); give an `emovid train` -o folder", run
        )
    try:
        data = yaml.safe_load((run / TRAIN_CONFIG).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelError(
            f"unreadable YAML ({type(e).__name__}); the run folder is damaged", run / TRAIN_CONFIG
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("task"), str):
        raise ModelError("names no task; the run folder is damaged", run / TRAIN_CONFIG)
    return data["task"]


def load(
    run: str | os.PathLike,
    device: str = "cpu",
    clips: str | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Predictor:
    """A :class:`Predictor` for a trained run folder.

    Args:
        run: the ``-o`` folder of ``emovid train`` (``model.safetensors``, ``model_config.yaml``,
            ``train_config.yaml``).
        device: torch device for the model (``cpu``, ``cuda``, ``cuda:1``).
        clips: which clips of a video are scored: ``None`` (the default windows, see the module notes), ``"eval"``
            (the clips validation scores) or a sampler spec. Face tasks take none.
        batch_size: windows per forward pass (face tasks: face crops per pass of the face model).

    Raises:
        InputNotFoundError: no such folder.
        ModelError: not a run folder, weights that do not fit its config, or a retrieval run.
        ConfigError: bad ``clips`` or ``batch_size``; a face run that does not record its face model.
    """
    from emovid.tasks import get_task

    p = Path(run)
    task = _run_task(p)
    cls = get_task(task)
    task_outputs(task)  # refuses tasks that score no videos before their model is built
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if cls.uses_embeddings:
        if clips is not None:
            raise ConfigError(f"{p}: a {task} run scores face crops chosen by its recipe; it takes no clips=")
        return FacePredictor(p, device, int(batch_size))
    return VideoPredictor(p, device, clips, int(batch_size))


class Predictions(list):
    """The records :meth:`Predictor.predict` returns (a list), with :meth:`to_pandas`."""

    def __init__(self, records: Iterable[dict], predictor: Predictor):
        super().__init__(records)
        self.predictor = predictor

    def to_pandas(self):
        """One row per video, :attr:`Predictor.columns` (needs pandas)."""
        return self.predictor.to_pandas(self)


class Predictor:
    """A trained run that scores new videos (see the module notes); made by :func:`load`.

    Attributes:
        task: the run's task name.
        outputs: value names of a record, in order.
        columns: CSV header: ``video``, the outputs, ``damaged`` (the damage as one line, empty when sound).
        batch_size: windows (face tasks: crops) per forward pass; may be changed.
        run: the run folder.
        device: the model's device.
    """

    task: str
    run: Path

    def __init__(self, run: Path, device: str, batch_size: int):
        self.run = Path(run)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.outputs = task_outputs(self.task)
        self.columns = ["video", *self.outputs, "damaged"]
        self._sha: str | None = None

    # ---- what it is ---------------------------------------------------------------------------------------------

    @property
    def weights_sha256(self) -> str:
        """First 16 hex digits of the SHA-256 of the run's ``model.safetensors``."""
        if self._sha is None:
            from emovid.train import MODEL_FILE

            self._sha = _file_sha256(self.run / MODEL_FILE)
        return self._sha

    @property
    def info(self) -> dict[str, Any]:
        """Settings a batch run records per output line (and checks on resume)."""
        return {"task": self.task, "run": str(self.run), "weights_sha256": self.weights_sha256}

    def describe(self) -> str:
        """One line: task, model, weights."""
        raise NotImplementedError

    # ---- scoring ------------------------------------------------------------------------------------------------

    def decode(self, path: str | os.PathLike) -> dict:
        """Everything the model needs of one video, decoded on CPU (no model runs; safe in DataLoader workers).

        Raises:
            VideoError: the file cannot be decoded (damaged files decode as far as they go).
        """
        raise NotImplementedError

    def score(self, decoded: dict, timeline: bool = False) -> dict:
        """The record of a video :meth:`decode` read."""
        raise NotImplementedError

    def predict_one(self, path: str | os.PathLike, timeline: bool = False) -> dict:
        """The record of one video (see the module notes).

        Raises:
            EmovidError: the file cannot be read (missing, not a video, nothing decodes).
        """
        return self.score(self.decode(path), timeline)

    def predict(self, paths: Iterable[str | os.PathLike], timeline: bool = False) -> Predictions:
        """Records of several videos, in order (the first unreadable one raises; batch runs use predict_one)."""
        return Predictions((self.predict_one(p, timeline) for p in paths), self)

    # ---- tables -------------------------------------------------------------------------------------------------

    def row(self, record: dict) -> dict[str, Any]:
        """A record as one flat CSV row keyed by :attr:`columns` (no series; damage as one line)."""
        from emovid.batch import damage_line

        out = {c: record.get(c) for c in self.columns}
        out["damaged"] = damage_line(record.get("damaged"))
        return out

    def to_pandas(self, records: Iterable[dict]):
        """A ``pandas.DataFrame`` of records, one row per video, :attr:`columns` in order.

        Raises:
            EmovidError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise EmovidError("to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame([self.row(r) for r in records], columns=self.columns)

    def _finish(self, video: str, values: dict[str, Any], series: dict | None, damage: dict | None) -> dict:
        rec: dict[str, Any] = {"video": video, **values}
        if series is not None:
            rec["series"] = series
        if damage:
            rec["damaged"] = damage
        return rec

    def __repr__(self) -> str:
        return f"<Predictor {self.describe()}>"


# ---- video tasks ---------------------------------------------------------------------------------------------------


def _first_seen(windows: list[list[int]]) -> list[tuple[list[int], list[bool]]]:
    """``(indices, keep)`` per window, ``keep`` false for frames an earlier window (or position) already showed."""
    seen: set[int] = set()
    out = []
    for idx in windows:
        keep = []
        for i in idx:
            keep.append(i not in seen)
            seen.add(i)
        out.append((list(idx), keep))
    return out


def _frame_ends(times: np.ndarray) -> np.ndarray:
    """When each frame stops showing: the next frame's time; the last lasts one typical frame interval."""
    t = np.asarray(times, np.float64)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return np.append(t[1:], t[-1] + step) if len(t) else t


class VideoPredictor(Predictor):
    """Clip tasks (intensity, vce, v2v) and sequence tasks (valence_arousal) on decoded video clips."""

    def __init__(self, run: Path, device: str, clips: str | None, batch_size: int):
        from emovid.train import _loaders, load_model_dir

        model, cfg, task = load_model_dir(run)
        self.task = cfg.task
        super().__init__(run, device, batch_size)
        self.model = model.to(self.device).eval()
        self.cfg, self._task = cfg, task
        self.pc = model.feature_extractor.pretrained_cfg
        # The validation loader of the run, built as training builds it: its transform, short side and channels
        # are the preprocessing the model was selected on.
        _, loader = _loaders(cfg, task, model)
        self.transform, self.short_side, self.in_chans = loader.transform, loader.short_side, loader.in_chans
        self.eval_sampler = loader.sampler
        # Sequence tasks score every frame once (their validation covers whole videos, unless --eval-sampler).
        self.covering = bool(task.sequence)
        self.clips = clips
        # threads decoding ahead in predict(), each taking whole videos (predict_one: one, overlapping the model)
        self.decode_threads = 2
        self._sampler = None
        if clips not in (None, "eval"):
            from emovid.extract import make_sampler

            self._sampler = make_sampler(self.pc, clips)
        elif clips is None and not self.covering:
            from emovid.extract import make_sampler

            self._sampler = make_sampler(self.pc)

    @property
    def clips_spec(self) -> str:
        """The clips this predictor scores, as a sampler spec (``covering:TxS`` for whole-video coverage)."""
        if self._sampler is not None:
            return str(self._sampler)
        s = self.eval_sampler
        if self.covering and not (self.clips == "eval" and self.cfg.eval_sampler):
            clip = f"{s.seconds:g}s" if s.seconds is not None else str(s.num_frames)
            return f"covering:{clip}x{s.stride}"
        return str(s)

    @property
    def info(self) -> dict[str, Any]:
        name = getattr(self.model.feature_extractor, "model_name", None) or self.cfg.model
        return {**super().info, "model": str(name), "clips": self.clips_spec}

    def describe(self) -> str:
        i = self.info
        return (
            f"{self.task} run {self.run}: {i['model']} backbone, weights model.safetensors "
            f"(sha256 {i['weights_sha256']}), clips {i['clips']}, {self.batch_size} per pass on {self.device}"
        )

    # ---- windows and decoding ---------------------------------------------------------------------------------

    def windows(self, num_frames: int, frame_times: np.ndarray) -> list[tuple[list[int], list[bool]]]:
        """The clips of a video: ``(frame indices, keep)`` per window; ``keep`` marks frames scored there (each
        frame of a sequence task is scored once)."""
        from emovid.video.sampling import covering_clips

        if self._sampler is not None:
            # a random: spec draws from a fixed generator, so a video scores the same every time
            return _first_seen(self._sampler(num_frames, frame_times, rng=np.random.default_rng(0)))
        s = self.eval_sampler
        if self.covering and not (self.clips == "eval" and self.cfg.eval_sampler):
            return covering_clips(num_frames, s.clip_frames(frame_times), s.stride)
        return _first_seen(s(num_frames, frame_times, rng=np.random.default_rng(0))[:1])  # validation: first clip

    def _size(self, reader) -> tuple[int, int] | None:
        # ClipLoader's rule: frames resized to the short side while decoding
        if not self.short_side:
            return None
        h, w = reader.info.height, reader.info.width
        s = self.short_side / min(h, w)
        return max(1, round(h * s)), max(1, round(w * s))

    def _clips(self, frames: np.ndarray, lengths: list[int]) -> torch.Tensor:
        """``[K, C, T, H, W]`` model input from the decoded frames of K windows (ClipLoader's steps)."""
        from emovid.video.transforms import to_tensor

        out, o = [], 0
        for n in lengths:
            x = to_tensor(frames[o : o + n])
            o += n
            if self.in_chans == 1:
                x = (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]).contiguous()
            if self.transform is not None:
                x = self.transform(x)
            out.append(x)
        return torch.stack(out)

    def _stream(self, path: str | os.PathLike, state: dict, batch: int) -> Iterator[torch.Tensor]:
        """Clips of ``batch`` windows at a time from one open reader; ``state`` gets windows, times, damage.

        Memory holds the decoded ``uint8`` frames of one pass (about :data:`DECODE_SPAN` frames of video, only those
        the windows take) and one batch of clips.
        """
        from emovid.video import VideoReader

        with VideoReader(path, threads=1, thread_type="SLICE") as r:
            n, times = len(r), r.frame_times
            wins = self.windows(n, times)
            state.update(windows=wins, times=times)
            size = self._size(r)
            i = 0
            while i < len(wins):
                j = min(len(wins), i + batch)
                first = min(wins[i][0])
                while j < len(wins) and max(wins[j - 1][0]) - first < DECODE_SPAN:
                    j = min(len(wins), j + batch)  # whole batches, so passes of the model stay full
                chunk = wins[i:j]
                frames = r.get_frames([f for idx, _ in chunk for f in idx], size=size, missing="nearest")
                o = 0
                for b in range(0, len(chunk), batch):
                    lengths = [len(idx) for idx, _ in chunk[b : b + batch]]
                    yield self._clips(frames[o : o + sum(lengths)], lengths)
                    o += sum(lengths)
                i = j
            state["damage"] = r.damage  # after decoding: it counts the errors met on the way

    def _forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            out = self._task.infer(self.model, clips.to(self.device))
        return {k: v.float().cpu() for k, v in out.items()}

    def decode(self, path: str | os.PathLike) -> dict:
        state: dict = {"video": os.fsdecode(path)}
        (clips,) = self._stream(path, state, batch=1 << 62)  # every window in one piece
        return {**state, "clips": clips}

    def score(self, decoded: dict, timeline: bool = False) -> dict:
        clips = decoded["clips"]
        parts = [self._forward(clips[i : i + self.batch_size]) for i in range(0, len(clips), self.batch_size)]
        return self._record(decoded, parts, timeline)

    def predict_one(self, path: str | os.PathLike, timeline: bool = False) -> dict:
        (rec,) = self._records([path], timeline)
        return rec

    def predict(self, paths: Iterable[str | os.PathLike], timeline: bool = False) -> Predictions:
        return Predictions(self._records(paths, timeline), self)

    def _records(self, paths: Iterable[str | os.PathLike], timeline: bool) -> Iterator[dict]:
        """Records of videos in order. :attr:`decode_threads` threads decode ahead (video ``i`` on thread
        ``i % N``, a few batches each) while the model runs; a video's error is raised here, in its turn."""
        import queue
        import threading

        paths = list(paths)
        n = max(1, min(int(self.decode_threads), len(paths)))
        queues: list[queue.Queue] = [queue.Queue(maxsize=PREFETCH) for _ in range(n)]
        stop = threading.Event()

        def put(q: queue.Queue, item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce(k: int) -> None:
            for i in range(k, len(paths), n):
                state: dict = {"video": os.fsdecode(paths[i])}
                try:
                    for clips in self._stream(paths[i], state, self.batch_size):
                        if not put(queues[k], ("clips", clips)):
                            return
                except BaseException as e:  # handed over: the caller's thread raises it, for this video
                    put(queues[k], ("error", e))
                    return
                if not put(queues[k], ("done", state)):
                    return

        # Readers decode with threads=1: FFmpeg's messages then stay on the thread that decodes, so each reader's
        # damage record is its own even with several decoding at once (see emovid.video.ffmpeg_log).
        workers = [threading.Thread(target=produce, args=(k,), name=f"emovid-predict-decode-{k}", daemon=True)
                   for k in range(n)]  # fmt: skip
        for w in workers:
            w.start()
        try:
            for i in range(len(paths)):
                parts: list[dict[str, torch.Tensor]] = []
                while True:
                    kind, item = queues[i % n].get()
                    if kind == "clips":
                        parts.append(self._forward(item))
                    elif kind == "error":
                        raise item
                    else:
                        yield self._record(item, parts, timeline)
                        break
        finally:
            stop.set()
            for w in workers:
                w.join()

    # ---- records ------------------------------------------------------------------------------------------------

    def _record(self, state: dict, parts: list[dict[str, torch.Tensor]], timeline: bool) -> dict:
        outs = {k: torch.cat([p[k] for p in parts]).double().numpy() for k in parts[0]}
        wins, times = state["windows"], np.asarray(state["times"], np.float64)
        series: dict[str, Any]
        if next(iter(outs.values())).ndim == 2:  # per frame: the frames each window scores, each frame once
            frames = np.array([i for idx, keep in wins for i, k in zip(idx, keep, strict=True) if k], np.int64)
            mask = np.array([k for _, keep in wins for k in keep], bool)
            order = np.argsort(frames, kind="stable")
            vals = {k: v.reshape(-1)[mask][order] for k, v in outs.items()}
            frames = frames[order]
            series = {"t": times[frames].round(6).tolist(), "frame": frames.tolist()}
        else:
            ends = _frame_ends(times)
            vals = outs
            series = {
                "t_start": [round(float(times[idx[0]]), 6) for idx, _ in wins],
                "t_end": [round(float(ends[max(idx)]), 6) for idx, _ in wins],
            }
        values: dict[str, Any] = {k: float(v.mean()) for k, v in vals.items()}
        values.update(self._task.derive(values))
        if timeline:
            series.update({k: v.tolist() for k, v in vals.items()})
        return self._finish(state["video"], values, series if timeline else None, state.get("damage"))


# ---- face-sequence tasks -------------------------------------------------------------------------------------------


class FacePredictor(Predictor):
    """emotion_dist, personality and fusion: face crops embedded with the run's recorded recipe, then the head.

    An input ending in ``.pt`` is taken as an embedding file written by ``emovid faces embed`` (no decoding).
    """

    def __init__(self, run: Path, device: str, batch_size: int):
        from emovid.tasks.face_sequence import FaceSequencePredictor

        self.faces = FaceSequencePredictor(run, device=device)
        self.task = self.faces.cfg.task
        super().__init__(run, device, batch_size)
        self.clips_spec = f"faces:{self.faces.num_crops}"

    @property
    def info(self) -> dict[str, Any]:
        r = self.faces.recipe
        face = {k: r.get(k) for k in ("model", "weights", "num_crops", "margin", "detector")}
        return {**super().info, "model": "embeddings", "face_embedder": face, "clips": self.clips_spec}

    def describe(self) -> str:
        r, i = self.faces.recipe, self.info
        return (
            f"{self.task} run {self.run}: face model {r['model']} (weights {r.get('weights')}), "
            f"{self.faces.num_crops} crops, {r.get('detector', 'haar')} detector; head weights model.safetensors "
            f"(sha256 {i['weights_sha256']}) on {self.device}"
        )

    def decode(self, path: str | os.PathLike) -> dict:
        if os.fsdecode(path).lower().endswith(".pt"):
            return self._embedding_file(Path(os.fsdecode(path)))
        fc = self.faces.crops(path)
        return {"video": os.fsdecode(path), "crops": fc, "length": fc.length, "damage": fc.damage}

    def _embedding_file(self, path: Path) -> dict:
        from emovid.models.hub import load_checkpoint
        from emovid.utils.paths import check_regular_file

        check_regular_file(path, "embedding file")
        d = load_checkpoint(path)
        emb = d.get("emb") if isinstance(d, dict) else d
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[1] != self.faces.embedder.dim:
            raise ConfigError(
                f"not a `faces embed` file with {self.faces.embedder.dim}-d embeddings [N, D] for this run", path
            )
        meta = d if isinstance(d, dict) else {}
        length = int(meta.get("length", len(emb)))
        return {"video": os.fsdecode(path), "emb": emb.float(), "length": length, "damage": meta.get("damaged")}

    def score(self, decoded: dict, timeline: bool = False) -> dict:
        n = int(decoded["length"])
        if n == 0:  # no face anywhere: no outputs are invented
            values: dict[str, Any] = {k: None for k in self._task_outputs()}
        else:
            emb = decoded.get("emb")
            if emb is None:
                emb = self.faces.embed_crops(decoded["crops"], self.batch_size)
            values = self.faces.outputs(emb)
        values["faces"] = n
        return self._finish(decoded["video"], values, None, decoded.get("damage"))

    def _task_outputs(self) -> list[str]:
        return [c for c in self.outputs if c != "faces"]
