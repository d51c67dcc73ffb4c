"""The seeds' recipes (configs/) on tiny models, layer-wise LR decay, multi-view testing, stochastic depth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emovid.config import TrainConfig
from emovid.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth_recipes")
    generate(out, num_videos=20, seed=4, size=64, fps=10, seconds=1.6, workers=0)
    return out


TINY = dict(epochs=1, batch_size=2, num_workers=0, progress_bar=False, limit_train_batches=2, precision="32-true")


def _recipe(name: str, synth: Path, tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig.from_yaml(CONFIGS / name, output_dir=str(tmp_path / "run"), pretrained="none", **{**TINY, **kw})


def test_vce_recipe_is_the_fork_and_runs(synth, tmp_path):
    from emovid.train import train

    fork = TrainConfig.from_yaml(CONFIGS / "vce_videomae.yaml")
    assert (fork.optimizer, fork.lr, fork.lr_reference_batch, fork.layer_decay, fork.min_lr) == (
        "adamw",
        5e-4,
        256,
        0.75,
        1e-6,
    )
    assert (fork.model_args["drop_path_rate"], fork.head_init_scale, fork.test_views, fork.monitor) == (
        0.1,
        0.001,
        "2x3",
        "val/acc1",
    )
    assert (fork.epochs, fork.batch_size, fork.warmup_epochs, fork.weight_decay, fork.num_frames) == (
        50,
        8,
        5,
        0.05,
        16,
    )
    # two steps on the tiny model; 1 x 2 views keep the final test short (2 x 3 is checked below)
    cfg = _recipe(
        "vce_videomae.yaml",
        synth,
        tmp_path,
        data=str(synth / "vce"),
        model="test_videomae",
        num_frames=4,
        input_size=32,
        test_views="1x2",
    )
    s = train(cfg)
    assert s["monitor"] == "val/acc1" and {"val/acc1", "val/acc3", "val/top1_in_top3"} <= set(s["best_metrics"])
    test = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert test["views"] == 2 and 0 <= test["acc1"] <= test["acc3"] <= 100


def test_v2v_recipe_is_the_fork_and_runs(synth, tmp_path):
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model, train

    cfg = _recipe(
        "v2v_videomae.yaml",
        synth,
        tmp_path,
        data=str(synth / "v2v"),
        model="test_videomae",
        train_sampler="linspace:4",
        eval_sampler="linspace:4",
        input_size=32,
        val_fraction=0.3,
    )
    fork = TrainConfig.from_yaml(CONFIGS / "v2v_videomae.yaml")
    assert (fork.optimizer, fork.nesterov, fork.momentum, fork.lr, fork.weight_decay, fork.epochs) == (
        "sgd",
        True,
        0.9,
        0.01,
        0.0,
        10,
    )
    assert (fork.resize, fork.train_sampler, fork.head_bias, fork.batch_size) == ("squash", "linspace:16", False, 4)
    model = build_task_model(cfg, get_task("v2v")(cfg), pretrained=False)
    assert model.head.fc.bias is None and model.head.fc.out_features == 1
    s = train(cfg)
    assert "val/pair_acc" in s["best_metrics"] and "test_pair_acc" in s["test_metrics"]
    assert "listwise_list_sorted" in s["test_metrics"]


def test_vaerr_recipe_is_the_seed_command(synth, tmp_path):
    cfg = TrainConfig.from_yaml(CONFIGS / "va_vaerr.yaml")
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.num_workers, cfg.clip_length) == (7e-5, 10, 5, 20, 4.0)
    assert (cfg.dataset, cfg.allow_size_mismatch, cfg.loss) == ("sewa_video", True, "ccc+ce")  # --loss_type 5
    assert (cfg.va_bins, cfg.segments_per_file, cfg.fine_tuning, cfg.every_frame) == (20, 3, "FT", True)
    assert (cfg.optimizer, cfg.weight_decay, cfg.weight_decay_1d, cfg.scheduler) == (
        "adamw",
        0.01,
        True,
        "cosine_epoch",
    )
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model
    from emovid.train.optim import build_optimizer

    cfg.model, cfg.pretrained = "test_resnet18_3dstem_gru", "none"
    model = build_task_model(cfg, get_task("valence_arousal")(cfg), pretrained=False)
    opt, lr, _ = build_optimizer(model, cfg, train_backbone=True)
    assert lr == 7e-5 and all(g["weight_decay"] == 0.01 and g["lr"] == 7e-5 for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_seed_003_command_line_runs_two_steps(synth, tmp_path, capsys):
    from emovid.cli import main

    ckpt = tmp_path / "ckpt_3Dconv.pth"
    from emovid.models import create_model

    torch.save({"state_dict": create_model("test_resnet18_3dstem").state_dict()}, ckpt)  # a pretext front-end
    seed = [
        "--lr",
        "0.00007",
        "--epochs",
        "1",
        "--batch-size",
        "5",
        "--workers",
        "0",
        "--clip_length",
        "0.8",
        f"--model-path={ckpt}",
        "--dataset=sewa_video",
        "--allow-size-mismatch",
        "--loss_type",
        "5",
    ]
    code = main(
        [
            "train",
            "valence_arousal",
            "--config",
            str(CONFIGS / "va_vaerr.yaml"),
            *seed,
            "--data",
            str(synth / "va.csv"),
            "--video-root",
            str(synth / "videos"),
            "--model",
            "test_resnet18_3dstem_gru",
            "--train-sampler",
            "random:0.8sx1",
            "--segments_per_file",
            "2",
            "--no-progress",
            "-o",
            str(tmp_path / "run"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    saved = TrainConfig.from_yaml(tmp_path / "run" / "train_config.yaml")
    assert (saved.loss, saved.dataset, saved.lr, saved.segments_per_file) == ("ccc+ce", "sewa_video", 7e-5, 2)
    assert json.loads(out[out.index("{") :])["best_metrics"]["val/ccc_mean"] is not None


def test_vaerr_ncce_loss_trains_and_fine_tuning_freezes(synth, tmp_path, loss="9"):
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model, train

    kw = dict(
        task="valence_arousal",
        data=str(synth / "va.csv"),
        video_root=str(synth / "videos"),
        model="test_resnet18_3dstem_gru",
        loss=loss,
        fine_tuning="Frozen3DConv",
        output_dir=str(tmp_path / "r"),
        clip_length=0.8,
        **TINY,
    )
    cfg = TrainConfig(**kw)
    task = get_task("valence_arousal")(cfg)
    model = build_task_model(cfg, task, pretrained=False)
    assert not any(p.requires_grad for p in model.feature_extractor.frontend3D.parameters())
    assert all(p.requires_grad for p in model.feature_extractor.trunk.parameters())
    y = model.head(torch.randn(3, 5, model.num_features))
    assert y.shape == (3, 5, 2, 21)  # arousal, valence: 20 bin probabilities + value
    torch.testing.assert_close(y[..., :20].sum(-1), torch.ones(3, 5, 2))
    assert float(y[..., 20].detach().abs().max()) <= 1
    s = train(TrainConfig(**kw))
    assert "val/ccc_mean" in s["best_metrics"]
    with pytest.raises(ConfigError, match="no 'frontend3D'"):
        get_task("valence_arousal")(TrainConfig(**{**kw, "model": "test_videomae"})).build_model(
            __import__("emovid.models", fromlist=["create_model"]).create_model("test_videomae")
        )
    with pytest.raises(ConfigError, match="--dataset"):
        get_task("valence_arousal")(TrainConfig(**{**kw, "dataset": "affwild"}))


# ---- layer-wise LR decay ----------------------------------------------------------------------------------------


def test_layer_decay_gives_the_expected_lr_per_group():
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model
    from emovid.train.optim import build_optimizer

    cfg = TrainConfig(
        task="vce",
        model="test_videomae",
        lr=1e-3,
        layer_decay=0.5,
        weight_decay=0.05,
        lr_reference_batch=16,
        batch_size=8,
    )
    model = build_task_model(cfg, get_task("vce")(cfg), pretrained=False)
    opt, lr, _ = build_optimizer(model, cfg, train_backbone=True, world_size=2)
    assert lr == pytest.approx(1e-3 * 8 * 2 / 16)  # total batch 16 / reference 16
    lr_of = {}
    for g in opt.param_groups:
        for p in g["params"]:
            lr_of[id(p)] = (g["lr"], g["weight_decay"])
    bb = model.feature_extractor
    # 2 blocks: stem 0.5^3, block 0 0.5^2, block 1 0.5, fc_norm and the head 1
    assert lr_of[id(bb.videomae.embeddings.patch_embeddings.projection.weight)] == (pytest.approx(lr / 8), 0.05)
    assert lr_of[id(bb.videomae.encoder.layer[0].attention.attention.query.weight)][0] == pytest.approx(lr / 4)
    assert lr_of[id(bb.videomae.encoder.layer[1].output.dense.weight)][0] == pytest.approx(lr / 2)
    assert lr_of[id(bb.videomae.encoder.layer[1].output.dense.bias)] == (pytest.approx(lr / 2), 0.0)
    assert lr_of[id(bb.fc_norm.weight)] == (pytest.approx(lr), 0.0)
    assert lr_of[id(model.head[1].weight)] == (pytest.approx(lr), 0.05)
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)


def test_layer_decay_groups_the_resnet_and_refuses_backbones_without_a_matcher():
    from emovid.models import create_model
    from emovid.train.optim import layer_ids

    bb = create_model("test_resnet18_3dstem_gru")
    ids, blocks = layer_ids(bb, [n for n, _ in bb.named_parameters()])
    assert blocks == 5  # layer1..layer4, GRU
    assert ids["frontend3D.0.weight"] == 0 and ids["trunk.layer1.0.conv1.weight"] == 1
    assert ids["trunk.layer4.0.conv1.weight"] == 4 and ids["gru.gru.weight_ih_l0"] == 5
    with pytest.raises(ConfigError, match="has no group_matcher"):
        layer_ids(torch.nn.Linear(2, 2), ["weight"])


def test_schedules():
    from emovid.train.optim import lr_factor, vaerr_epoch_factor

    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.01) == pytest.approx(1.0) and lr_factor(100, 100, 10, 0.01) == pytest.approx(0.01)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    # VAERR: epochs 0 and 1 at the full LR, then 0.5 (1 + cos(pi (e - 1) / E))
    assert [round(vaerr_epoch_factor(e, 4), 6) for e in range(4)] == [
        1.0,
        1.0,
        round(0.5 * (1 + np.cos(np.pi / 4)), 6),
        0.5,
    ]


# ---- multi-view testing -----------------------------------------------------------------------------------------


def test_view_geometry_is_the_forks():
    from emovid.train.views import SegmentSampler, SpatialCrop, parse_views

    assert parse_views("2x3") == (2, 3)
    with pytest.raises(ConfigError, match="SEGMENTSxCROPS"):
        parse_views("2-3")
    # 40 frames every 4th: 10 frames; clips of 4 start at 0 and int(1 * 6 / 1) = 6 of them
    assert SegmentSampler(4, 4, 0, 2)(40) == [[0, 4, 8, 12]]
    assert SegmentSampler(4, 4, 1, 2)(40) == [[24, 28, 32, 36]]
    assert SegmentSampler(4, 4, 0, 2)(6) == [[0, 4, 4, 4]]  # too short: the last frame repeats
    x = torch.arange(48, dtype=torch.float32).expand(1, 1, 32, 48).contiguous()  # [C, T, H, W], value = column
    starts = [SpatialCrop(32, j, 3, (0.0,), (1.0,))(x)[0, 0, 0, 0].item() for j in range(3)]
    assert starts == [0.0, 8.0, 16.0]


def test_multi_view_testing_equals_the_mean_of_the_single_views(synth):
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model
    from emovid.train.views import average_views, evaluate_views, predict_loader, view_loaders

    cfg = TrainConfig(
        task="vce",
        model="test_videomae",
        data=str(synth / "vce"),
        num_workers=0,
        batch_size=4,
        test_views="2x3",
        frame_stride=2,
    )
    task = get_task("vce")(cfg)
    task.load()
    model = build_task_model(cfg, task, pretrained=False).eval()
    records = task.test_records[:5]
    loaders = view_loaders(model, 2, 3)
    assert len(loaders) == 6
    views = [predict_loader(task, model, records, ld, 4, 0, "cpu") for ld in loaders]
    assert not np.allclose(views[0]["logit"], views[5]["logit"])  # the views differ
    merged = average_views(views)
    np.testing.assert_allclose(merged["logit"], np.mean([v["logit"] for v in views], axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged["target"], views[0]["target"])
    metrics = evaluate_views(task, model, records, cfg)
    expected = task.compute_metrics(merged)
    assert metrics["acc1"] == pytest.approx(expected["acc1"]) and metrics["pearson"] == pytest.approx(
        expected["pearson"]
    )


def test_fork_accuracy_of_the_top_rated_emotion():
    from emovid.tasks.vce import top_rated_accuracy

    target = np.zeros((3, 27))
    target[0, 5], target[1, 2], target[2, 9] = 1.0, 0.8, 0.4
    logits = np.zeros((3, 27))
    logits[0, 5] = 3  # top-1 right
    logits[1, [0, 1, 2]] = [3, 2, 1]  # third
    logits[2, [0, 1, 2]] = [3, 2, 1]  # not in the top 3
    assert top_rated_accuracy(logits, target) == {"acc1": pytest.approx(100 / 3), "acc3": pytest.approx(200 / 3)}


# ---- stochastic depth --------------------------------------------------------------------------------------------


def test_videomae_drop_path_is_stochastic_depth_in_training_only():
    from emovid.models import create_model

    torch.manual_seed(0)
    plain = create_model("test_videomae")
    dropped = create_model("test_videomae", drop_path_rate=0.5)
    assert set(plain.state_dict()) == set(dropped.state_dict())  # same keys: checkpoints load either way
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), plain.eval()(x))  # evaluation: no dropping
        dropped.train()
        a, b = dropped(x), dropped(x)
    assert not torch.allclose(a, b)
    rates = [layer.output.drop_prob for layer in dropped.videomae.encoder.layer]
    assert rates == pytest.approx([0.0, 0.5])  # linspace(0, rate, depth)
