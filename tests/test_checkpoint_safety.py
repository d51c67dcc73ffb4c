"""Checkpoints never run code: every torch pickle is read with ``weights_only=True`` unless the user trusts it."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib

import numpy as np
import pytest
import torch

from emovid.errors import ModelError
from emovid.models import hub

FER = "test_fer_mini_xception"


class _System:
    """Unpickling calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Touch:
    """Unpickling calls ``pathlib.Path.touch(path)``."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv(hub.TRUST_ENV, raising=False)
    previous = hub.set_trust_checkpoints(None)
    yield
    hub.set_trust_checkpoints(previous)


@pytest.fixture(params=["os.system", "Path.touch"])
def evil(request, tmp_path):
    """A ``.pth`` whose unpickling creates ``marker``: returns (file, marker, the global the refusal names)."""
    marker = tmp_path / "marker"
    if request.param == "os.system":
        payload, named = _System(f"touch {marker}"), "posix.system" if os.name == "posix" else "nt.system"
    else:
        payload, named = _Touch(marker), "getattr"  # protocol 2 pickles Path.touch as getattr(Path, "touch")
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": payload}, path)
    assert not marker.exists()
    return path, marker, named


def _fer_state_dict() -> dict:
    from emovid.models import create_model

    return create_model(FER, num_classes=7).state_dict()


def _assert_refusal(message: str, path: pathlib.Path, named: str) -> None:
    assert len(message.strip().splitlines()) == 1, message
    assert str(path) in message and named in message and "--trust-checkpoint" in message, message
    assert "runs the file's code" in message, message


def test_malicious_pickle_is_refused_by_the_file_reader(evil):
    path, marker, named = evil
    with pytest.raises(ModelError) as e:
        hub.load_state_dict_file(path)
    _assert_refusal(str(e.value), path, named)
    assert not marker.exists()


def test_malicious_pickle_is_refused_by_create_model(evil):
    from emovid.models import create_model

    path, marker, named = evil
    with pytest.raises(ModelError) as e:
        create_model(FER, pretrained=str(path), num_classes=7)
    _assert_refusal(str(e.value), path, named)
    assert not marker.exists()


def test_trust_is_the_only_way_to_run_a_files_code(evil, monkeypatch):
    path, marker, _ = evil
    hub.load_checkpoint(path, trust=True)  # the documented opt-in: this runs the payload
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's escape hatch does not reach our loads
    with pytest.raises(ModelError):
        hub.load_checkpoint(path)
    assert not marker.exists()


def test_published_checkpoint_extras_load_without_trust(tmp_path):
    sd = _fer_state_dict()
    dino_args = argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536, lr=5e-4, output_dir="/out")
    # DINO's main_dino.py: student/teacher/optimizer/epoch/args/dino_loss
    dino = {"student": sd, "teacher": sd, "optimizer": {}, "epoch": 101, "args": dino_args, "dino_loss": {}}
    torch.save(dino, tmp_path / "checkpoint.pth")
    got = hub.load_state_dict_file(tmp_path / "checkpoint.pth")
    assert got["args"] == dino_args and torch.equal(got["student"]["head.conv.weight"], sd["head.conv.weight"])
    # EmoNeXt's train.py: best_acc is np.mean(...) * 100 (a NumPy scalar); arrays and dtypes occur too
    emonext = {"model": sd, "opt": {}, "best_acc": np.float64(71.5), "hist": np.arange(3.0), "dt": np.dtype("f4")}
    torch.save(emonext, tmp_path / "emonext.pt")
    got = hub.load_state_dict_file(tmp_path / "emonext.pt")
    assert got["best_acc"] == 71.5 and got["hist"].tolist() == [0, 1, 2] and got["dt"] == np.float32
    # and through create_model: the weights are found under "model"
    from emovid.models import create_model

    model = create_model(FER, pretrained=str(tmp_path / "emonext.pt"), num_classes=7)
    assert torch.equal(model.state_dict()["head.conv.weight"], sd["head.conv.weight"])
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed per load, not process-wide


def test_unknown_class_names_the_global_and_trust_loads_it(tmp_path, monkeypatch):
    path = tmp_path / "dated.pth"
    torch.save({"state_dict": _fer_state_dict(), "saved": datetime.datetime(2024, 5, 1)}, path)
    with pytest.raises(ModelError, match=r"dated\.pth: refusing to load: it pickles datetime\.datetime"):
        hub.load_checkpoint(path)
    assert hub.load_checkpoint(path, trust=True)["saved"].year == 2024
    monkeypatch.setenv(hub.TRUST_ENV, "1")
    assert hub.trust_checkpoints() and hub.load_checkpoint(path)["saved"].year == 2024
    with pytest.raises(ModelError):  # an explicit trust=False wins over the environment
        hub.load_checkpoint(path, trust=False)


def test_feature_cache_with_timestamps_reads_safely(tmp_path):
    from emovid.features import FeatureStore

    store = FeatureStore(tmp_path)
    store.put("v1", torch.ones(4, 8), np.linspace(0, 1, 4))
    emb, times = FeatureStore(tmp_path).get("v1")
    assert emb.shape == (4, 8) and times.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


# ---- the command line ----------------------------------------------------------------------------------------------


def _analyze(video, weights, out, *extra) -> list[str]:
    return [
        "analyze",
        str(video),
        "--model",
        FER,
        "--pretrained",
        str(weights),
        "-o",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_cli_analyze_refuses_a_malicious_pretrained_file(evil, index_video, tmp_path, capsys):
    from emovid.cli import main

    path, marker, named = evil
    assert main(_analyze(index_video, path, tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("emovid: error: ")
    _assert_refusal(err, path, named)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["after", "before", "env"])
def test_cli_trust_checkpoint_flag_anywhere_or_env(where, index_video, tmp_path, capsys, monkeypatch):
    from emovid.cli import main

    path = tmp_path / "dated.pth"
    torch.save({"state_dict": _fer_state_dict(), "saved": datetime.datetime(2024, 5, 1)}, path)
    assert main(_analyze(index_video, path, tmp_path / "refused")) == 1
    assert "datetime.datetime" in capsys.readouterr().err
    args = _analyze(index_video, path, tmp_path / "out")
    if where == "after":
        args.append("--trust-checkpoint")
    elif where == "before":
        args.insert(0, "--trust-checkpoint")
    else:
        monkeypatch.setenv(hub.TRUST_ENV, "1")
    assert main(args) == 0, capsys.readouterr().err
    assert list((tmp_path / "out").rglob("*.json"))
    monkeypatch.delenv(hub.TRUST_ENV, raising=False)
    assert not hub.trust_checkpoints()  # main() gives the process its untrusting default back


# ---- --resume: our own reads and Lightning's ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, num_videos=16, seed=3, size=64, fps=10, seconds=1.2, workers=0)
    return out


def _train_args(synth, out, epochs: int, *extra) -> list[str]:
    return ["train", "intensity", "--data", str(synth / "intensity.csv"), "-o", str(out), "--model",
            "test_resnet18_3dstem", "--epochs", str(epochs), "--batch-size", "8", "--num-workers", "0",
            "--score", "norm", "--no-progress", *extra]  # fmt: skip


def test_resume_checkpoint_is_read_safely(synth, tmp_path, capsys):
    from emovid.cli import main

    out = tmp_path / "run"
    assert main(_train_args(synth, out, 1)) == 0
    last = out / "checkpoints" / "last.ckpt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == []  # what our trainer writes is plain data
    state = torch.load(last, map_location="cpu", weights_only=True)

    marker = tmp_path / "marker"
    torch.save({**state, "extra": _System(f"touch {marker}")}, last)
    capsys.readouterr()
    assert main(_train_args(synth, out, 2, "--resume")) == 1
    err = capsys.readouterr().err.strip()
    _assert_refusal(err, last, "system")
    assert not marker.exists()

    torch.save({**state, "saved": datetime.datetime(2024, 5, 1)}, last)  # not code, but not allow-listed either
    assert main(_train_args(synth, out, 2, "--resume")) == 1
    assert "datetime.datetime" in capsys.readouterr().err
    assert main(_train_args(synth, out, 2, "--resume", "--trust-checkpoint")) == 0
    summary = capsys.readouterr().out
    assert json.loads(summary[summary.index("{") :])["epochs_run"] == 2


def test_lightning_reads_checkpoints_through_the_safe_loader(tmp_path, evil):
    from emovid.config import TrainConfig
    from emovid.train import make_trainer

    path, marker, named = evil
    cfg = TrainConfig(task="intensity", output_dir=str(tmp_path), epochs=1, progress_bar=False, accelerator="cpu")
    trainer = make_trainer(cfg, tmp_path, [], False)
    with pytest.raises(ModelError) as e:
        trainer.strategy.load_checkpoint(path)  # what fit(ckpt_path=...) calls, whatever weights_only it passes
    _assert_refusal(str(e.value), path, named)
    with pytest.raises(ModelError):
        trainer.strategy.load_checkpoint(path, weights_only=False)
    assert not marker.exists()
