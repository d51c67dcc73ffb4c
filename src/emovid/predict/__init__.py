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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
        from emovid.predict.faces import FacePredictor

        return FacePredictor(p, device, int(batch_size))
    from emovid.predict.video import VideoPredictor

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


def __getattr__(name: str):
    # The predictor classes live in submodules that import this one; reachable from here as before.
    if name == "VideoPredictor":
        from emovid.predict.video import VideoPredictor

        return VideoPredictor
    if name == "FacePredictor":
        from emovid.predict.faces import FacePredictor

        return FacePredictor
    raise AttributeError(name)
