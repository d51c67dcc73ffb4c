"""Issue 14: metrics and splits that tell the truth (ties, constant predictors, leaks, whole-sequence scoring)."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emovid.config import TrainConfig

# ---- fusion validates on data no frozen part was fitted on ------------------------------------------------------


def _mosei_csv(path, n=200):
    """A 70/20/10 train/dev/test MOSEI CSV (ids shuffled so the split column is not a block of rows)."""
    rng = np.random.default_rng(0)
    splits = np.array(["train"] * int(0.7 * n) + ["dev"] * int(0.2 * n) + ["test"] * (n - int(0.9 * n)))
    rng.shuffle(splits)
    rows = ["video_id,happy,sad,anger,surprise,disgust,fear,split"]
    for i, s in enumerate(splits):
        rows.append(f"m{i:03d}," + ",".join(str(int(x)) for x in rng.integers(0, 4, 6)) + f",{s}")
    path.write_text("\n".join(rows) + "\n")
    return {f"m{i:03d}": s for i, s in enumerate(splits)}


def _fiv2_pickle(path, n=60):
    keys = [f"yt{i // 2:03d}.{i % 2:03d}.mp4" for i in range(n)]
    names = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
    with open(path, "wb") as f:
        pickle.dump({t: {k: 0.5 for k in keys} for t in names}, f, protocol=2)


def _head_dir(path, **cfg):
    path.mkdir()
    TrainConfig(**cfg).save(path / "train_config.yaml")
    return str(path)


def test_fusion_split_follows_the_official_split_and_the_frozen_heads(tmp_path):
    from emovid.tasks.base import split_records
    from emovid.tasks.face_sequence import FusionTask, PersonalityTask

    official = _mosei_csv(tmp_path / "mosei.csv")
    _fiv2_pickle(tmp_path / "fiv2.pkl")
    emo = _head_dir(tmp_path / "emo", task="emotion_dist", data=str(tmp_path / "mosei.csv"))
    # The personality head was split with other settings than the fusion run's defaults.
    per = _head_dir(
        tmp_path / "per", task="personality", data=str(tmp_path / "fiv2.pkl"), val_fraction=0.3, split_seed=7
    )
    cfg = TrainConfig(
        task="fusion",
        data=str(tmp_path / "mosei.csv"),
        data2=str(tmp_path / "fiv2.pkl"),
        emotion_checkpoint=emo,
        personality_checkpoint=per,
    )
    task = FusionTask(cfg)
    task.load()
    side = {
        name: {r.video_id for r in recs if hasattr(r, "distribution")}
        for name, recs in (("train", task.train_records), ("val", task.val_records), ("test", task.test_records))
    }
    assert side["val"] == {v for v, s in official.items() if s == "dev"}  # 40 rows
    assert side["test"] == {v for v, s in official.items() if s == "test"}  # 20 rows, kept for the final score
    assert side["train"] == {v for v, s in official.items() if s == "train"}
    # FIV2: validation is the personality head's own validation split, never a clip it was trained on.
    head = PersonalityTask(
        TrainConfig(task="personality", data=str(tmp_path / "fiv2.pkl"), val_fraction=0.3, split_seed=7)
    )
    head.load()
    head_train = {r.video_id for r in head.train_records}
    fus_val = {r.video_id for r in task.val_records if hasattr(r, "traits")}
    assert fus_val and not fus_val & head_train
    assert fus_val == {r.video_id for r in head.val_records}
    # The figure of the issue: a fresh random split of the MOSEI rows puts dev/test rows in fusion training.
    from emovid.data.readers.mosei import read_mosei_csv

    _, old_val = split_records(read_mosei_csv(tmp_path / "mosei.csv"), cfg)
    assert sum(official[r.video_id] == "train" for r in old_val) > 20  # measured: 33 of 40


def test_fusion_moves_rows_a_frozen_head_was_trained_on_out_of_validation(tmp_path, caplog):
    """A head trained on another split of the same rows: what it has seen can be neither validation nor test."""
    from emovid.tasks.face_sequence import EmotionDistTask, FusionTask

    official = _mosei_csv(tmp_path / "mosei.csv")
    # The head's labels had no split column: it drew its own random split of the same videos.
    rows = (tmp_path / "mosei.csv").read_text().splitlines()
    (tmp_path / "nosplit.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    _fiv2_pickle(tmp_path / "fiv2.pkl")
    emo = _head_dir(tmp_path / "emo", task="emotion_dist", data=str(tmp_path / "nosplit.csv"))
    per = _head_dir(tmp_path / "per", task="personality", data=str(tmp_path / "fiv2.pkl"))
    task = FusionTask(
        TrainConfig(
            task="fusion",
            data=str(tmp_path / "mosei.csv"),
            data2=str(tmp_path / "fiv2.pkl"),
            emotion_checkpoint=emo,
            personality_checkpoint=per,
        )
    )
    task.load()
    head = EmotionDistTask(TrainConfig(task="emotion_dist", data=str(tmp_path / "nosplit.csv")))
    head.load()
    seen = {r.video_id for r in head.train_records}
    held = {r.video_id for r in task.val_records + task.test_records if hasattr(r, "distribution")}
    assert held and not held & seen
    assert held <= {v for v, s in official.items() if s != "train"}
    assert "frozen" in caplog.text


# ---- retrieval ranks: ties are not wins ------------------------------------------------------------------------


def test_collapsed_retrieval_model_scores_at_the_bottom_not_the_top():
    from emovid.tasks.retrieval import retrieval_metrics, retrieval_ranks

    video = np.ones((4, 8), np.float32)  # a collapsed model: every embedding the same
    text = np.ones((4, 8), np.float32)
    m = retrieval_metrics(text, video, ["a", "b", "c", "d"])
    assert m["t2v_r1"] == 0.0 and m["v2t_r1"] == 0.0  # was 1.0
    assert m["t2v_medr"] == 4.0 and m["v2t_medr"] == 4.0  # pessimistic: behind every tied item
    assert m["rsum"] == 4.0  # was 6.0, the maximum; R@5 and R@10 are trivially 1 with 4 videos
    # several positives tied with the rest: behind every tied non-positive, ahead of nothing
    assert retrieval_ranks(np.zeros((1, 5)), [np.array([1, 3])]).tolist() == [4]


def _brute_force_rank(sim_row: np.ndarray, positives: set[int]) -> int:
    """The worst rank of the first positive over every ordering of the gallery consistent with the scores."""
    worst = 0
    for order in itertools.permutations(range(len(sim_row))):
        if all(sim_row[order[i]] >= sim_row[order[i + 1]] for i in range(len(order) - 1)):
            worst = max(worst, 1 + next(i for i, g in enumerate(order) if g in positives))
    return worst


def test_retrieval_recall_matches_brute_force_with_ties_and_several_captions():
    from emovid.tasks.retrieval import retrieval_metrics

    rng = np.random.default_rng(3)
    ids = ["a", "a", "b", "c", "c", "c", "d", "e"]  # 5 videos, 8 captions
    for _ in range(5):
        # one-hot video embeddings and small integer caption scores: many exact ties
        video = np.eye(5, dtype=np.float64)[[0, 0, 1, 2, 2, 2, 3, 4]]
        text = rng.integers(0, 3, size=(8, 5)).astype(np.float64)
        m = retrieval_metrics(text, video, ids)
        gallery = ["a", "b", "c", "d", "e"]
        t2v = [_brute_force_rank(text[q], {gallery.index(ids[q])}) for q in range(8)]
        v2t = [_brute_force_rank(text[:, j], {q for q in range(8) if ids[q] == v}) for j, v in enumerate(gallery)]
        for k in (1, 5, 10):
            assert m[f"t2v_r{k}"] == pytest.approx(np.mean(np.array(t2v) <= k))
            assert m[f"v2t_r{k}"] == pytest.approx(np.mean(np.array(v2t) <= k))
        assert m["t2v_medr"] == np.median(t2v) and m["v2t_meanr"] == pytest.approx(np.mean(v2t))


# ---- one tie rule for in-batch pairs, sampled pairs and validation -------------------------------------------------


def test_intensity_ties_on_a_tenth_grid_agree_on_every_path():
    from emovid.data.datasets import ClipDataset, collate_skip_none
    from emovid.data.pairs import all_pairs, pair_target
    from emovid.losses import pair_targets
    from emovid.tasks.intensity import IntensityTask

    scores = [round(0.1 * i, 1) for i in range(11)]  # 0.0, 0.1, ..., 1.0
    recs = [SimpleNamespace(video_id=f"v{i}", video_path=f"v{i}.mp4", intensity=s) for i, s in enumerate(scores)]
    task = IntensityTask(TrainConfig(task="intensity", tie_tol=0.1))
    task.train_records = recs
    ds = ClipDataset(recs, lambda rec, rng: (torch.zeros(1), None), task.targets)
    batch = collate_skip_none([ds[i] for i in range(len(ds))])
    a, b, t = task.batch_pairs(batch)
    sampled = {(p.a, p.b): p.target for p in all_pairs(scores, tie_tol=0.1)}
    in_batch = {(int(i), int(j)): float(x) for i, j, x in zip(a, b, t, strict=True)}
    assert in_batch == sampled
    adjacent = [in_batch[(i, i + 1)] for i in range(10)]
    assert adjacent == [0.5] * 10  # was 4 of 10 trained as decided
    assert (
        float(pair_targets(torch.tensor([1.1], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), 0.1))
        == pair_target(1.1, 1.0, 0.1)
        == 0.5
    )


# ---- valence/arousal: every frame of every validation video, once ------------------------------------------------


def _va_data(root, specs):
    from conftest import make_index_video

    (root / "videos").mkdir(parents=True)
    rows = ["video,time,valence,arousal"]
    for name, n, fps in specs:
        make_index_video(root / "videos" / f"{name}.mp4", n=n, fps=fps)
        for k in range(int(n / fps * 10) + 1):
            t = k / 10
            rows.append(f"{name},{t:.1f},{np.sin(t + n):.3f},{np.cos(2 * t):.3f}")
    (root / "va.csv").write_text("\n".join(rows) + "\n")


VA_SPECS = [("a", 23, 10), ("b", 17, 20), ("c", 3, 10)]  # longer than a clip, another fps, shorter than a clip


@pytest.mark.parametrize("stride", [1, 2])
def test_va_validation_windows_cover_every_frame_once(tmp_path, stride):
    from torch.utils.data import DataLoader

    from emovid.data.datasets import collate_skip_none
    from emovid.tasks.valence_arousal import ValenceArousalTask
    from emovid.train import _loaders, build_task_model

    _va_data(tmp_path, VA_SPECS)
    cfg = TrainConfig(
        task="valence_arousal",
        data=str(tmp_path / "va.csv"),
        video_root=str(tmp_path / "videos"),
        model="test_resnet18_3dstem_gru",
        clip_length=0.4,
        frame_stride=stride,
        num_workers=0,
    )
    task = ValenceArousalTask(cfg)
    task.load()
    task.val_records = task.train_records + task.val_records
    model = build_task_model(cfg, task, pretrained=False).eval()
    _, eval_loader = _loaders(cfg, task, model)
    ds = task.val_dataset(eval_loader)
    seen = Counter()
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        for f, k in zip(meta["frames"].tolist(), meta["keep"].tolist(), strict=True):
            if k:
                seen[(task.val_records[meta["video_index"]].video_id, f)] += 1
    want = {(name, f) for name, n, _ in VA_SPECS for f in range(n)}
    assert set(seen) == want and set(seen.values()) == {1}
    # Through predict and the metrics: the monitored CCC is over all 43 frames (the centre clip gave 4 + 8 + 3).
    dl = DataLoader(ds, batch_size=2, collate_fn=getattr(ds, "collate_fn", collate_skip_none))
    with torch.no_grad():
        outs = [task.predict(model, b, False) for b in dl]
    cat = {k: torch.cat([torch.as_tensor(o[k]) for o in outs]).numpy() for k in outs[0]}
    m = task.compute_metrics(cat)
    assert m["frames"] == 43 and np.isfinite(m["ccc_mean"])


def test_va_clip_length_follows_each_videos_fps():
    from emovid.video.sampling import ClipSampler

    s = ClipSampler("random", num_frames=4, stride=1, seconds=0.8)
    assert len(s(40, np.arange(40) / 20, rng=0)[0]) == 16
    assert len(s(40, np.arange(40) / 10, rng=0)[0]) == 8
    assert str(ClipSampler("center", num_frames=4, stride=2, seconds=0.8)) == "center:0.8sx2"


def test_va_trains_on_mixed_frame_rates_and_monitors_the_whole_sequence(tmp_path):
    from emovid.train import train

    _va_data(tmp_path, [("a", 23, 10), ("b", 17, 20), ("c", 13, 10), ("d", 30, 20)])
    cfg = TrainConfig(
        task="valence_arousal",
        data=str(tmp_path / "va.csv"),
        video_root=str(tmp_path / "videos"),
        model="test_resnet18_3dstem_gru",
        clip_length=0.4,
        output_dir=str(tmp_path / "run"),
        epochs=1,
        batch_size=4,
        num_workers=0,
        progress_bar=False,
        val_fraction=0.5,
        loss="ccc",
    )
    m = train(cfg)["best_metrics"]
    frames = {"a": 23, "b": 17, "c": 13, "d": 30}
    from emovid.tasks.valence_arousal import ValenceArousalTask

    task = ValenceArousalTask(cfg)
    task.load()
    assert m["val/frames"] == sum(frames[r.video_id] for r in task.val_records)


# ---- constant predictions score 0, never vanish -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The variance of predictions or target is close to zero")
def test_constant_predictions_score_zero_not_nan_or_one():
    from emovid.tasks.face_sequence import PersonalityTask
    from emovid.tasks.valence_arousal import ValenceArousalTask
    from emovid.tasks.vce import mean_pearson

    rng = np.random.default_rng(0)
    t = rng.uniform(0.2, 0.8, size=(20, 5))
    p = np.full_like(t, 0.5)
    p[:, 0] = t[:, 0]  # perfect on one trait, constant on four
    m = PersonalityTask(TrainConfig(task="personality")).compute_metrics({"pred": p, "target": t})
    assert m["ccc"] == pytest.approx(0.2)  # was 1.0: the four constant traits dropped out of the mean
    assert mean_pearson(p, t) == pytest.approx(0.2)
    assert mean_pearson(np.zeros_like(t), t) == 0.0
    va = ValenceArousalTask(TrainConfig(task="valence_arousal"))
    target = np.stack([np.linspace(-1, 1, 30)] * 2, -1)[None]  # [1 video, 30 frames, 2]
    pred = np.stack([np.zeros(30), np.linspace(-1, 1, 30)], -1)[None]  # valence constant, arousal perfect
    out = va.compute_metrics({"pred": pred, "target": target})
    assert out["ccc_valence"] == 0.0 and out["ccc_mean"] == pytest.approx(0.5)  # was NaN (then dropped)


# ---- smaller fixes -----------------------------------------------------------------------------------------------


def test_rng_capture_includes_cuda_states(monkeypatch):
    from emovid.utils import training

    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1], dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: calls.setdefault("set", s))
    state = training.capture_rng()
    assert state["cuda"][0].tolist() == [1]
    training.restore_rng(state)
    assert calls["set"][0].tolist() == [1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    training.restore_rng(state)  # a CUDA checkpoint resumed on CPU: the CPU and NumPy states still come back


def test_no_weight_decay_on_biases_norms_and_logit_scale():
    from emovid.utils.training import param_groups

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.ln = torch.nn.LayerNorm(4)
            self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    m = M()
    groups = param_groups(m.named_parameters(), 0.05, lr=1e-3)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(m.fc.weight)}
    assert all(g["lr"] == 1e-3 for g in groups)


def test_engine_optimizer_exempts_biases_from_weight_decay():
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model, make_module

    cfg = TrainConfig(task="intensity", model="test_resnet18_3dstem", scheduler="constant", weight_decay=0.1)
    task = get_task("intensity")(cfg)
    model = build_task_model(cfg, task, pretrained=False)
    opt = make_module(task, model, cfg, cached=False).configure_optimizers()
    for g in opt.param_groups:
        assert all(p.ndim >= 2 for p in g["params"]) if g["weight_decay"] > 0 else True
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert any(p is model.head.fc.bias for p in no_decay)


def test_info_nce_does_not_push_apart_two_captions_of_one_video():
    from emovid.losses import info_nce

    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    v[1] = v[0]  # rows 0 and 1: two captions of one video
    t = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1).requires_grad_(True)
    loss = info_nce(v, t, 10.0, groups=torch.tensor([0, 0, 1, 2]))
    # the same as scoring each caption against the other videos only
    logits = 10 * v @ t.t()
    keep = ~torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    masked = logits.masked_fill(~keep, float("-inf"))
    ref = (
        torch.nn.functional.cross_entropy(masked, torch.arange(4))
        + torch.nn.functional.cross_entropy(masked.t(), torch.arange(4))
    ) / 2
    torch.testing.assert_close(loss, ref)
    assert not torch.isclose(info_nce(v, t, 10.0), ref)


def test_dino_teacher_temperature_follows_the_reference_schedule():
    from emovid.pretrain import teacher_temperature

    ref = np.concatenate((np.linspace(0.04, 0.07, 30), np.ones(70) * 0.07))  # facebookresearch/dino
    got = [teacher_temperature(e, 0.04, 0.07, 30) for e in range(100)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert teacher_temperature(0, 0.04, 0.07, 1) == pytest.approx(0.04)  # linspace of one point
    assert teacher_temperature(1, 0.04, 0.07, 1) == pytest.approx(0.07)


def test_warmup_is_the_configured_epochs_of_steps_under_max_steps():
    from emovid.utils.training import warmup_steps

    # 10 batches an epoch, accumulation 2: 5 optimiser steps an epoch; max_steps 40 caps the run at 40 steps
    trainer = SimpleNamespace(estimated_stepping_batches=40, num_training_batches=10, accumulate_grad_batches=2)
    assert warmup_steps(trainer, 2.0) == 10  # two epochs' worth, not 2/20 of max_steps (4)
    assert warmup_steps(trainer, 0.0) == 0


def test_engine_warmup_under_max_steps(tmp_path):
    """Through the engine: warm-up of one epoch with --max-steps is one epoch of steps."""
    import lightning.pytorch as pl

    from emovid.train import train

    ids = [f"v{i:02d}" for i in range(40)]
    rows = ["video_id,happy,sad,anger,surprise,disgust,fear"] + [f"{v},{i % 4},0,1,0,0,0" for i, v in enumerate(ids)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "emb").mkdir()
    for v in ids:
        torch.save({"emb": torch.randn(30, 8), "length": 30}, tmp_path / "emb" / f"{v}.pt")
    seen = {}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, module):
            sched = trainer.lr_scheduler_configs[0].scheduler
            seen["factors"] = [sched.lr_lambdas[0](k) for k in range(6)]

    cfg = TrainConfig(
        task="emotion_dist",
        data=str(tmp_path / "m.csv"),
        video_root=str(tmp_path / "emb"),
        output_dir=str(tmp_path / "run"),
        epochs=10,
        max_steps=6,
        warmup_epochs=1.0,
        batch_size=8,
        num_workers=0,
        progress_bar=False,
    )
    train(cfg, callbacks=[Probe()])
    assert seen["factors"][:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # 32 training rows / 8 = 4 steps


def test_a_batch_without_samples_still_takes_a_step():
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model, make_module

    cfg = TrainConfig(task="intensity", model="test_resnet18_3dstem")
    task = get_task("intensity")(cfg)
    model = build_task_model(cfg, task, pretrained=False)
    module = make_module(task, model, cfg, cached=False)
    loss = module.training_step(None, 0)
    assert loss is not None and float(loss.detach()) == 0.0
    loss.backward()  # every rank runs backward, so DDP's all-reduce is met everywhere
    assert all(p.grad is not None and float(p.grad.abs().sum()) == 0.0 for p in model.parameters())
