"""Video-model predictors: sliding windows (or covering clips) decoded once, scored in batches."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import emovid.predict as _base  # its constants are read at call time: tests and users may tune DECODE_SPAN
from emovid.predict import Predictions, Predictor


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

        Memory holds the decoded ``uint8`` frames of one pass (about :data:`emovid.predict.DECODE_SPAN` frames of
        video, only those the windows take) and one batch of clips.
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
                while j < len(wins) and max(wins[j - 1][0]) - first < _base.DECODE_SPAN:
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
        queues: list[queue.Queue] = [queue.Queue(maxsize=_base.PREFETCH) for _ in range(n)]
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
