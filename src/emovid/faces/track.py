"""Tracking faces across sampled frames: IoU matching with a centre-distance fallback, box smoothing, main face.

Sampled frames can be far apart (30 frames over a minute of video are 2 s apart), so a face that moved may no
longer overlap its previous box. A detection therefore continues a track when their IoU reaches ``iou_threshold``
or, failing that, when the centres lie within ``centre_gate`` face sides of each other and the sizes are within a
factor of two. The pairing is an optimal assignment (``scipy.optimize.linear_sum_assignment``) that always prefers
overlap to mere proximity. A track not seen for more than ``max_gap`` samples ends.

Smoothed boxes are an exponential moving average of the detections (``smoothing`` = weight of the new box), which
removes Haar jitter from crops and reports; raw boxes are kept alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emovid.faces.detect import Face, iou_matrix

__all__ = ["IoUTracker", "Track", "main_track"]


@dataclass
class Track:
    """One face followed over sampled frames.

    Attributes:
        id: track number, in order of appearance (0, 1, ...).
        steps: sample indices (positions in the sequence of sampled frames) where the face was detected.
        times: their times in seconds.
        boxes: raw detector boxes ``(x, y, w, h)``.
        smoothed: smoothed boxes, one per detection.
        scores: detector scores.
    """

    id: int
    steps: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    smoothed: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    @property
    def mean_area(self) -> float:
        b = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        return float((b[:, 2] * b[:, 3]).mean()) if len(b) else 0.0

    def box_at(self, step: int, smoothed: bool = True) -> tuple[float, float, float, float] | None:
        """The track's box at a sample index, or ``None`` where the face was not detected (nothing is invented)."""
        try:
            k = self.steps.index(step)
        except ValueError:
            return None
        return (self.smoothed if smoothed else self.boxes)[k]


class IoUTracker:
    """Online tracker over sampled frames.

    Args:
        iou_threshold: IoU at or above which a detection continues a track.
        centre_gate: fallback: centre distance below this many (geometric-mean) face sides continues a track.
        max_gap: samples a track may miss before it ends.
        smoothing: weight of the new detection in the moving average of the box (1 = no smoothing).
        keep_finished: keep ended tracks in :attr:`tracks` (turn off on hour-long inputs if only ids are needed).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        centre_gate: float = 0.5,
        max_gap: int = 5,
        smoothing: float = 0.6,
        keep_finished: bool = True,
    ):
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must lie in (0, 1]")
        self.iou_threshold = iou_threshold
        self.centre_gate = centre_gate
        self.max_gap = max_gap
        self.smoothing = smoothing
        self.keep_finished = keep_finished
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._next_id = 0

    @property
    def num_tracks(self) -> int:
        """Tracks started so far (distinct faces), including ended ones even when they are not kept."""
        return self._next_id

    @property
    def tracks(self) -> list[Track]:
        """All tracks so far (ended and active), by id."""
        return sorted(self.finished + self.active, key=lambda t: t.id)

    def _similarity(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        iou = iou_matrix(prev, cur)
        cp = prev[:, None, :2] + prev[:, None, 2:] / 2
        cc = cur[None, :, :2] + cur[None, :, 2:] / 2
        dist = np.linalg.norm(cp - cc, axis=-1)
        side_p = np.sqrt(prev[:, 2] * prev[:, 3])[:, None]
        side_c = np.sqrt(cur[:, 2] * cur[:, 3])[None, :]
        side = np.sqrt(side_p * side_c)
        ratio = side_p / np.maximum(side_c, 1e-9)
        gate = (dist < self.centre_gate * side) & (ratio > 0.5) & (ratio < 2.0)
        # Proximity-only matches score below any accepted overlap, so overlap always wins the assignment.
        near = self.iou_threshold * 0.99 * (1 - dist / np.maximum(self.centre_gate * side, 1e-9))
        sim = np.where(iou >= self.iou_threshold, iou, np.where(gate, np.maximum(near, 1e-6), 0.0))
        return sim

    def update(self, step: int, time: float, faces: Sequence[Face]) -> list[tuple[int, tuple[float, ...]]]:
        """Add the detections of sample ``step``; returns ``(track id, smoothed box)`` per face, in input order."""
        # End tracks that have been missing too long.
        still = []
        for tr in self.active:
            if step - tr.last_step > self.max_gap + 1:
                if self.keep_finished:
                    self.finished.append(tr)
            else:
                still.append(tr)
        self.active = still

        cur = np.asarray([f.box for f in faces], np.float64).reshape(-1, 4)
        assign: dict[int, Track] = {}
        if len(cur) and self.active:
            prev = np.asarray([tr.smoothed[-1] for tr in self.active], np.float64)
            sim = self._similarity(prev, cur)
            for r, c in _assignment(sim):
                if sim[r, c] > 0:
                    assign[int(c)] = self.active[int(r)]
        out = []
        a = self.smoothing
        for j, face in enumerate(faces):
            tr = assign.get(j)
            box = tuple(float(v) for v in face.box)
            if tr is None:
                tr = Track(self._next_id)
                self._next_id += 1
                self.active.append(tr)
                sm = box
            else:
                prev_box = tr.smoothed[-1]
                sm = tuple(a * n + (1 - a) * p for n, p in zip(box, prev_box, strict=False))
            tr.steps.append(step)
            tr.times.append(float(time))
            tr.boxes.append(box)  # type: ignore[arg-type]
            tr.smoothed.append(sm)  # type: ignore[arg-type]
            tr.scores.append(float(face.score))
            out.append((tr.id, sm))
        return out


def _assignment(sim: np.ndarray) -> list[tuple[int, int]]:
    """Row-column pairs maximising the total similarity (Hungarian method for several faces and tracks).

    One face or one track, by far the common case, is an argmax; ``scipy.optimize`` (imported only otherwise)
    takes ~0.6 s to import, which is more than analysing a short clip.
    """
    if sim.shape[0] == 1:
        return [(0, int(np.argmax(sim[0])))]
    if sim.shape[1] == 1:
        return [(int(np.argmax(sim[:, 0])), 0)]
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-sim)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def main_track(tracks: Sequence[Track]) -> Track | None:
    """The main face: the track detected in the most samples; ties go to the larger mean box, then the earlier one."""
    if not tracks:
        return None
    return max(tracks, key=lambda t: (len(t), t.mean_area, -t.id))
