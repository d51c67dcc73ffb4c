"""``v2v`` (Emodiversity): which video feels more pleasant — Video to Valence preference learning.

Labels: a V2V folder. ``train_labels.json`` pairs ``[a, b]`` (b preferred) train a scalar valence score with
RankNet (``--loss ranknet``, default); with ``--loss listnet`` or ``--loss plackett`` the listwise comparisons
(``listwise_labels.json``, ordered least → most preferred) train it with ListNet or Plackett–Luce instead.
A validation share of the videos (``--val-fraction``; comparisons with only validation videos validate,
those with only training videos train, mixed ones are dropped) picks the best checkpoint;
``test_labels.json`` and ``listwise_labels.json`` are scored at the end. Metrics: pairwise accuracy; for lists,
exact-order rate and mean Kendall τ, and ``list_sorted``, the Emodiversity fork's listwise accuracy (a list counts
when its scores never decrease from least to most preferred, ``run_v2v_finetuning.evaluate_listwise``).
``--no-head-bias`` gives the fork's score layer, ``Linear(D, 1, bias=False)`` (a bias cancels in every comparison).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from emovid.data.datasets import ListDataset, PairDataset, VideoRef
from emovid.errors import ConfigError
from emovid.losses import listnet_loss, plackett_luce_loss, ranknet_loss
from emovid.tasks.base import Task, register_task


def _refs(comparisons) -> tuple[list[VideoRef], dict[str, int]]:
    refs: dict[str, VideoRef] = {}
    for c in comparisons:
        for vid, path in zip(c.video_ids, c.video_paths, strict=False):
            refs.setdefault(vid, VideoRef(vid, path))
    lst = list(refs.values())
    return lst, {r.video_id: i for i, r in enumerate(lst)}


def ranking_metrics(scores: dict[str, float], comparisons) -> dict[str, float]:
    """Pairwise accuracy over all ordered pairs in ``comparisons`` (least → most preferred); for lists longer
    than 2 also the exact-order rate and mean Kendall τ."""
    from scipy.stats import kendalltau

    correct = total = 0.0
    exact, taus, n_lists, sorted_ = 0, [], 0, 0
    for c in comparisons:
        ids = [v for v in c.video_ids if v in scores]
        if len(ids) < 2:
            continue
        s = np.array([scores[v] for v in ids])
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                total += 1
                correct += 1.0 if s[j] > s[i] else (0.5 if s[j] == s[i] else 0.0)
        if len(ids) > 2:
            n_lists += 1
            exact += int(np.all(np.diff(s) > 0))
            sorted_ += int(np.all(np.diff(s) >= 0))
            taus.append(kendalltau(np.arange(len(s)), s).statistic)
    out = {"pair_acc": correct / total if total else float("nan")}
    if n_lists:
        out["list_exact"] = exact / n_lists
        out["list_sorted"] = sorted_ / n_lists
        out["kendall_tau"] = float(np.nanmean(taus))
    return out


class Score(nn.Module):
    def __init__(self, num_features: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(num_features, 1, bias=bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.fc(e).squeeze(-1)


@register_task
class V2VTask(Task):
    name = "v2v"
    default_model = "videomae_base_patch16_224"
    monitor = "val/pair_acc"
    mode = "max"
    sample_kind = "pair"
    losses = ("ranknet", "listnet", "plackett")
    outputs = ("valence",)  # the preference score: higher = more pleasant (an unbounded scale, not [-1, 1])

    def load(self) -> None:
        from emovid.data.readers.v2v import read_v2v
        from emovid.data.splits import split_ids

        if not self.cfg.data:
            raise ConfigError("v2v: give the dataset folder with --data DIR (train_labels.json, videos/)")
        root = Path(self.cfg.data)
        listwise = self.loss_name in ("listnet", "plackett")
        pairs = read_v2v(root, "train")
        lists = []
        if listwise:
            src = Path(self.cfg.v2v_listwise) if self.cfg.v2v_listwise else root / "listwise_labels.json"
            lists = read_v2v(src, "listwise")
        # Split by video (no video on both sides): validation comparisons have only validation videos, training
        # ones only training videos; comparisons across the two are dropped. Validation always scores the pairwise
        # judgements; list training uses the lists.
        videos = sorted({v for c in pairs + lists for v in c.video_ids})
        val_videos = set(split_ids(videos, self.cfg.val_fraction, seed=self.cfg.split_seed).val)
        self.val_comparisons = [c for c in pairs + lists if set(c.video_ids) <= val_videos]
        self.train_comparisons = [c for c in (lists if listwise else pairs) if not set(c.video_ids) & val_videos]
        self.sample_kind = "list" if listwise else "pair"
        self.train_records, self._train_index = _refs(self.train_comparisons)
        self.val_records, _ = _refs(self.val_comparisons)
        self.test_sets = {}
        for split in ("test", "listwise") if not listwise else ("test",):
            if (root / f"{split}_labels.json").exists():
                self.test_sets[split] = read_v2v(root, split)
        test = [c for comps_ in self.test_sets.values() for c in comps_]
        self.test_records, _ = _refs(test)
        if not self.train_comparisons:
            raise ConfigError(f"{root}: no training comparisons left after the validation split")

    def drop_videos(self, bad_paths: set[str]) -> None:
        def ok(c):
            return all(str(p) not in bad_paths for p in c.video_paths)

        self.train_comparisons = [c for c in self.train_comparisons if ok(c)]
        self.val_comparisons = [c for c in self.val_comparisons if ok(c)]
        self.train_records, self._train_index = _refs(self.train_comparisons)
        self.val_records, _ = _refs(self.val_comparisons)

    def targets(self, record, frame_times):
        return {}

    def build_head(self, num_features: int) -> nn.Module:
        return Score(num_features, bias=self.cfg.head_bias)

    def train_dataset(self, loader, epoch):
        base = super().train_dataset(loader, epoch)
        idx = self._train_index
        if self.sample_kind == "list":
            return ListDataset(base, [[idx[v] for v in c.video_ids] for c in self.train_comparisons])
        # (least, most) preferred: "A ranks higher" is false, t = 0.
        return PairDataset(base, [(idx[c.video_ids[0]], idx[c.video_ids[1]], 0.0) for c in self.train_comparisons])

    def training_loss(self, model, batch, cached):
        if self.sample_kind == "list":
            v, mask = batch["videos"], batch["mask"]
            b, n = mask.shape
            s = model(v.flatten(0, 1), cached).view(b, n)
            if self.loss_name == "listnet":
                rel = torch.arange(n, dtype=s.dtype).expand(b, n)
                return listnet_loss(s, rel, mask)
            # Plackett-Luce wants the most preferred first: reverse each list's real items.
            order = torch.stack([_reverse_real(m) for m in mask])
            return plackett_luce_loss(torch.gather(s, 1, order), mask)
        n = len(batch["target"])
        s = model(torch.cat([batch["video_a"], batch["video_b"]]), cached)
        return ranknet_loss(s[:n], s[n:], batch["target"])

    def predict(self, model, batch, cached):
        return {"index": batch["meta"]["index"], "score": model(batch["video"], cached)}

    def infer(self, model, x):
        return {"valence": model(x)}

    def compute_metrics(self, outputs, comparisons=None, records=None):
        records = records if records is not None else self.val_records
        scores = {records[i].video_id: float(s) for i, s in zip(outputs["index"], outputs["score"], strict=False)}
        return ranking_metrics(scores, comparisons if comparisons is not None else self.val_comparisons)

    def test_metrics(self, outputs) -> dict[str, float]:
        out = {}
        for split, comps in self.test_sets.items():
            for k, v in self.compute_metrics(outputs, comps, self.test_records).items():
                out[f"{split}_{k}"] = v
        return out


def _reverse_real(mask: torch.Tensor) -> torch.Tensor:
    n_real = int(mask.sum())
    idx = torch.arange(len(mask))
    idx[:n_real] = torch.arange(n_real - 1, -1, -1)
    return idx
