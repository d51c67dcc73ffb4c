"""Self-supervised pretext pretraining (BYOL, DINO): formulas, augmentations, runs, downstream loading, resume, CLI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from emovid.errors import ConfigError
from emovid.pretrain import (
    ClipAugment,
    DINOHead,
    PretrainConfig,
    byol_loss,
    cosine_momentum,
    dino_loss,
    ema_update,
    teacher_temperature,
    update_center,
)

FRONT = "test_resnet18_3dstem"
GRU = "test_resnet18_3dstem_gru"
TINY_HEADS = dict(
    byol_hidden_dim=32,
    byol_proj_dim=16,
    dino_hidden_dim=32,
    dino_bottleneck_dim=16,
    dino_out_dim=64,
    local_crops=2,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("pt_synth")
    generate(out, num_videos=4, seed=5, size=64, fps=10, seconds=1.0, workers=0)
    return out / "videos"


def _cfg(videos, out, **kw) -> PretrainConfig:
    base = dict(
        method="byol",
        videos=str(videos),
        output_dir=str(out),
        model=FRONT,
        epochs=1,
        batch_size=2,
        num_workers=0,
        progress_bar=False,
        log_every_n_steps=1,
        warmup_epochs=0,
        **TINY_HEADS,
    )
    base.update(kw)
    return PretrainConfig(**base)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- formulas ----------------------------------------------------------------------------------------------------


def test_byol_loss_is_two_minus_two_cosine_and_stops_the_target_gradient():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[0.0, 2.0], [3.0, 3.0]], requires_grad=True)
    # Row 0: orthogonal -> 2 - 0 = 2; row 1: parallel -> 2 - 2 = 0; mean 1.
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(1.0)
    # ||p/|p| - z/|z|||^2 equals 2 - 2 cos for every row (Grill et al. Eq. 2).
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    direct = ((a / a.norm(dim=1, keepdim=True) - b / b.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()
    assert byol_loss(a, b).item() == pytest.approx(direct.item(), rel=1e-6)
    loss.backward()
    assert p.grad is not None and z.grad is None  # sg(z')


def test_cosine_momentum_schedule_and_ema_update_formula():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(1 - 0.004 * 0.5)
    k, kk = 13, 40
    assert cosine_momentum(k, kk, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi * k / kk) + 1) / 2)

    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, 0.9)
    for name, v in target.state_dict().items():
        assert torch.allclose(v, 0.9 * before[name] + 0.1 * online.state_dict()[name], atol=1e-7)


def test_dino_loss_matches_the_cross_entropy_formula():
    gen = torch.Generator().manual_seed(1)
    b, k = 3, 5
    student = [torch.randn(b, k, generator=gen) for _ in range(4)]  # 2 globals + 2 locals
    teacher = [torch.randn(b, k, generator=gen) for _ in range(2)]
    center = torch.randn(1, k, generator=gen)
    ts, tt = 0.1, 0.04
    got = dino_loss(student, teacher, center, ts, tt).item()

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    terms = []
    for iq in range(2):
        pt = softmax((teacher[iq].numpy() - center.numpy()) / tt)
        for v in range(4):
            if v == iq:
                continue
            ps = softmax(student[v].numpy() / ts)
            terms.append(np.mean(-(pt * np.log(ps)).sum(-1)))
    assert len(terms) == 6
    assert got == pytest.approx(float(np.mean(terms)), rel=1e-5)
    # The teacher gets no gradient through the loss.
    t = [x.clone().requires_grad_(True) for x in teacher]
    s = [x.clone().requires_grad_(True) for x in student]
    dino_loss(s, t, center, ts, tt).backward()
    assert all(x.grad is None for x in t) and all(x.grad is not None for x in s)


def test_dino_center_update_and_teacher_temperature_warmup():
    c = torch.tensor([[1.0, 2.0]])
    out = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 2.0]])
    new = update_center(c, out, 0.9)
    assert torch.allclose(new, 0.9 * c + 0.1 * torch.tensor([[2.0, 2.0]]))
    assert teacher_temperature(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert teacher_temperature(15, 0.04, 0.07, 30) == pytest.approx(0.04 + 0.03 * 15 / 29)  # reference linspace
    assert teacher_temperature(29, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(30, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(3, 0.04, 0.04, 0) == pytest.approx(0.04)


def test_dino_head_has_unit_norm_prototypes_and_fixed_g():
    head = DINOHead(8, 11, hidden_dim=16, bottleneck_dim=4, norm_last_layer=True)
    y = head(torch.randn(3, 8))
    assert y.shape == (3, 11)
    w = head.last_layer.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(11), atol=1e-6)
    assert not head.last_layer.parametrizations.weight.original0.requires_grad
    # The bottleneck output is l2-normalised, so |logit| <= 1 with unit-norm prototypes.
    assert y.abs().max() <= 1 + 1e-5


# ---- augmentation ------------------------------------------------------------------------------------------------


def test_clip_augment_is_deterministic_and_the_same_across_frames():
    frame = torch.rand(3, 1, 40, 48, generator=torch.Generator().manual_seed(0))
    clip = frame.expand(3, 6, 40, 48).contiguous()
    aug = ClipAugment(24, (0.3, 1.0), (0.5,), (0.25,), in_chans=1, blur_p=1.0, jitter_p=1.0)
    a = aug(clip, np.random.default_rng([0, 1, 2]))
    b = aug(clip, np.random.default_rng([0, 1, 2]))
    c = aug(clip, np.random.default_rng([0, 2, 2]))
    assert a.shape == (1, 6, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # One crop, flip, jitter and blur for the whole clip: identical frames stay identical.
    assert torch.allclose(a, a[:, :1].expand_as(a))
    rgb = ClipAugment(16, (0.5, 1.0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), in_chans=3)(clip, np.random.default_rng(3))
    assert rgb.shape == (3, 6, 16, 16)


def test_views_are_separate_temporal_crops_seeded_by_seed_epoch_index(index_video):
    from emovid.pretrain import PretextClips, ViewSpec

    views = [
        ViewSpec(8, 2, 16, (0.5, 1.0), 0.0),
        ViewSpec(8, 2, 16, (0.5, 1.0), 0.0),
        ViewSpec(4, 1, 8, (0.1, 0.3), 0.0),
    ]
    augs = [ClipAugment(v.size, v.scale, (0.5,), (0.25,), in_chans=1) for v in views]
    starts = set()
    for i in range(6):
        ds = PretextClips([index_video] * 6, views, augs, short_side=20, seed=7, epoch=0)
        item = ds[i]
        assert [tuple(v.shape) for v in item["views"]] == [(1, 8, 16, 16), (1, 8, 16, 16), (1, 4, 8, 8)]
        fr = item["frames"]
        for k, (n, s) in enumerate([(8, 2), (8, 2), (4, 1)]):
            idx = fr[k, :n].tolist()
            assert idx == list(range(idx[0], idx[0] + n * s, s))  # a contiguous clip at the view's stride
        starts.add((int(fr[0, 0]), int(fr[1, 0])))
        again = PretextClips([index_video] * 6, views, augs, short_side=20, seed=7, epoch=0)[i]
        assert torch.equal(again["frames"], fr) and all(
            torch.equal(x, y) for x, y in zip(again["views"], item["views"], strict=True)
        )
    assert any(a != b for a, b in starts)  # the two views usually come from different times
    other_epoch = PretextClips([index_video] * 6, views, augs, short_side=20, seed=7, epoch=1)[0]
    first = PretextClips([index_video] * 6, views, augs, short_side=20, seed=7, epoch=0)[0]
    assert not torch.equal(other_epoch["views"][0], first["views"][0])


# ---- runs, checkpoint directory, downstream loading --------------------------------------------------------------


def test_byol_two_steps_then_load_into_valence_arousal_backbone(videos, tmp_path):
    from safetensors.torch import load_file

    from emovid.config import TrainConfig
    from emovid.models import create_model
    from emovid.pretrain import pretrain
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model

    out = tmp_path / "byol"
    s = pretrain(_cfg(videos, out))
    assert s["global_step"] == 2 and s["videos"] == 4 and s["epochs_done"] == 1
    for name in ("model.safetensors", "model_config.yaml", "pretrain_config.yaml", "metrics.csv"):
        assert (out / name).exists(), name
    assert (out / "checkpoints" / "last.ckpt").exists()
    sd = load_file(str(out / "model.safetensors"))
    fresh = create_model(FRONT, num_classes=0)
    assert set(sd) == set(fresh.state_dict())  # the registry model's own keys, nothing of the pretext heads
    assert any(not torch.equal(sd[k], v) for k, v in fresh.state_dict().items() if v.is_floating_point())

    strict = create_model(FRONT, pretrained=str(out / "model.safetensors"))
    assert strict.load_report.ok
    gru = create_model(GRU, pretrained=str(out / "model.safetensors"), allow_size_mismatch=True, strict=False)
    gru_sd = gru.state_dict()
    assert all(torch.equal(gru_sd[k], v) for k, v in sd.items())
    assert {k.split(".")[0] for k in gru.load_report.missing} == {"gru"}

    # The engine's build path for `emovid train valence_arousal --model-path CKPT --allow-size-mismatch`.
    cfg = TrainConfig(
        task="valence_arousal", model=GRU, pretrained=str(out / "model.safetensors"), allow_size_mismatch=True
    )
    task_model = build_task_model(cfg, get_task("valence_arousal")(cfg))
    fe = task_model.feature_extractor.state_dict()
    assert all(torch.equal(fe[k], v) for k, v in sd.items())

    # The folder itself works as `pretrained` too (model.safetensors inside).
    again = create_model(FRONT, pretrained=str(out))
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sd.items())

    rows = _rows(out / "metrics.csv")
    assert any(r.get("train/loss_epoch") for r in rows)
    momentum = [float(r["train/momentum"]) for r in rows if r.get("train/momentum")]
    assert momentum == pytest.approx([0.996, 0.998])  # τ_k = 1 - (1 - 0.996)(cos(πk/2) + 1)/2, k = 0, 1


def test_byol_target_is_the_ema_of_the_online_network(videos, tmp_path):
    """One optimiser step: target = τ0·init + (1 − τ0)·online_after_step, for every parameter."""
    import lightning.pytorch as pl

    from emovid.pretrain import pretrain

    captured = {}

    class Grab(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            captured["init"] = {k: v.clone() for k, v in module.target_backbone.state_dict().items()}

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            captured["online"] = {k: v.clone() for k, v in module.backbone.named_parameters()}
            captured["target"] = {k: v.clone() for k, v in module.target_backbone.named_parameters()}
            captured["tau"] = cosine_momentum(0, trainer.estimated_stepping_batches, 0.99)

    pretrain(_cfg(videos, tmp_path / "ema", max_steps=1, byol_tau=0.99), callbacks=[Grab()])
    tau = captured["tau"]
    assert tau == pytest.approx(0.99)
    for k, t in captured["target"].items():
        assert torch.allclose(t, tau * captured["init"][k] + (1 - tau) * captured["online"][k], atol=1e-6), k


def test_dino_two_steps_via_cli_and_extract(videos, tmp_path, capsys):
    import json

    import yaml
    from safetensors.torch import load_file

    from emovid.cli import main

    out = tmp_path / "dino"
    code = main(
        ["pretrain", "dino", "--videos", str(videos), "--output-dir", str(out), "--model", FRONT, "--epochs", "1",
         "--batch-size", "2", "--num-workers", "0", "--no-progress", "--num-frames", "3", "--local-crops", "2",
         "--dino-hidden-dim", "32", "--dino-bottleneck-dim", "16", "--dino-out-dim", "64", "--warmup-epochs", "0",
         "--log-every-n-steps", "1"]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads(text[text.index("{") :])
    assert summary["method"] == "dino" and summary["global_step"] == 2 and summary["clip"]["num_frames"] == 3
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    assert state["center"].abs().sum() > 0  # the centre moved away from zero
    assert any(
        not torch.equal(state[f"backbone.{k}"], state[f"teacher_backbone.{k}"])
        for k in ("trunk.layer1.0.conv1.weight",)
    )
    mc = yaml.safe_load((out / "model_config.yaml").read_text())
    assert mc["model"] == FRONT and mc["pretext"]["method"] == "dino" and mc["pretext"]["global_step"] == 2
    assert yaml.safe_load((out / "pretrain_config.yaml").read_text())["method"] == "dino"

    # `emovid extract --model NAME --pretrained CKPT`: features of the pretrained front-end.
    feats = tmp_path / "feats"
    weights = str(out / "model.safetensors")
    code = main(["extract", "--model", FRONT, "--pretrained", weights, "--video-root", str(videos),
                 "--output-dir", str(feats), "--num-workers", "0", "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    npys = sorted(feats.glob("*.npy"))
    assert len(npys) == 4 and np.load(npys[0]).shape == (32,)
    from emovid.models import create_model

    sd = load_file(str(out / "model.safetensors"))
    m = create_model(FRONT, pretrained=str(out / "model.safetensors"))
    assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items())


def test_resume_continues_exactly(videos, tmp_path):
    import lightning.pytorch as pl
    from safetensors.torch import load_file

    from emovid.pretrain import pretrain

    class Stop(Exception):
        pass

    class StopInEpoch2(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                raise Stop()

    full = pretrain(_cfg(videos, tmp_path / "a", epochs=2))
    cut = _cfg(videos, tmp_path / "b", epochs=2)
    with pytest.raises(Stop):
        pretrain(cut, callbacks=[StopInEpoch2()])
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        pretrain(cut)
    cut.resume = True
    resumed = pretrain(cut)
    assert resumed["global_step"] == full["global_step"] == 4
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    ra, rb = _rows(tmp_path / "a" / "metrics.csv"), _rows(tmp_path / "b" / "metrics.csv")
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    la = [float(r["train/loss_step"]) for r in ra if r.get("train/loss_step")]
    lb = [float(r["train/loss_step"]) for r in rb if r.get("train/loss_step")]
    assert la == pytest.approx(lb, rel=1e-5)


# ---- bad input ---------------------------------------------------------------------------------------------------


def test_cli_errors_are_one_line(tmp_path, videos, capsys):
    from emovid.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["pretrain", "byol", "--videos", str(empty), "-o", str(tmp_path / "o1")])
    err = capsys.readouterr().err
    assert code != 0 and "no video files found" in err and str(empty) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    code = main(["pretrain", "byol", "--videos", str(tmp_path / "missing"), "-o", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert code != 0 and "missing" in err and "Traceback" not in err

    code = main(["pretrain", "byol", "--videos", str(videos), "--model", "resnet99_nope", "-o", str(tmp_path / "o3")])
    err = capsys.readouterr().err
    assert code != 0 and "unknown model 'resnet99_nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o3").exists()

    code = main(["pretrain", "simclr", "--videos", str(videos), "-o", str(tmp_path / "o4")])
    err = capsys.readouterr().err
    assert code != 0 and "unknown pretext method 'simclr'" in err

    code = main(["pretrain", "byol", "--videos", str(videos), "-o", str(tmp_path / "o5"), "--resume"])
    err = capsys.readouterr().err
    assert code != 0 and "nothing to resume" in err


def test_config_recipe_and_validation(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dino\nepochs: 7\ncrop_scale: [0.5, 1.0]\n")
    cfg = PretrainConfig.from_yaml(recipe, epochs=2)
    assert (cfg.method, cfg.epochs, cfg.crop_scale) == ("dino", 2, (0.5, 1.0))
    cfg.save(tmp_path / "saved.yaml")
    assert PretrainConfig.from_yaml(tmp_path / "saved.yaml").to_dict() == cfg.to_dict()
    recipe.write_text("method: byol\nepochz: 3\n")
    with pytest.raises(ConfigError, match="unknown option"):
        PretrainConfig.from_yaml(recipe)
    with pytest.raises(ConfigError, match="crop_scale"):
        PretrainConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="batch_size"):
        PretrainConfig(batch_size=1)
