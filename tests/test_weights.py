"""Pretrained weights: default tags in train/extract, `emovid weights fetch`, EMOVID_HOME, fast offline errors.

Nothing leaves the machine: weights are served by an HTTP server on 127.0.0.1 in a thread, and "no network" is a
closed local port or a local socket that accepts connections but never answers.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
import time

import pytest
import torch
import torch.nn as nn

from emovid.cli import main
from emovid.config import TrainConfig
from emovid.errors import ModelError, WeightsUnavailableError
from emovid.models import PretrainedCfg, WeightSource, create_model, default_weights, hub, register_model
from emovid.models import registry as reg

NAME = "test_tmp_weights"


class Tiny(nn.Module):
    """A backbone small enough to serve its weights over HTTP."""

    num_features = 4

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward_features(self, x):
        return self.proj(x.flatten(2).mean(-1))

    def forward(self, x):
        return self.forward_features(x)


@pytest.fixture()
def online(monkeypatch, tmp_path):
    """Network allowed (conftest sets the offline variables), a private EMOVID_HOME, fresh reachability probes."""
    for var in ("EMOVID_OFFLINE", "HF_HUB_OFFLINE", "EMOVID_CACHE", "EMOVID_NETWORK_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMOVID_HOME", str(tmp_path / "home"))
    hub.forget_network_probes()
    yield tmp_path / "home"
    hub.forget_network_probes()


@pytest.fixture()
def server(tmp_path):
    """``(base_url, folder)``: a folder served over HTTP on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def silent_port():
    """A port that accepts TCP connections and never answers (a black-holing firewall or a hung proxy)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture()
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connections are refused
    return port


def _register(monkeypatch, weights: dict[str, WeightSource], default: str | None) -> None:
    cfg = PretrainedCfg(num_frames=2, input_size=(8, 8), weights=weights, default_tag=default)
    monkeypatch.delitem(reg._REGISTRY, NAME, raising=False)
    register_model(Tiny, pretrained_cfg=cfg, family="test", name=NAME)
    monkeypatch.setitem(reg._REGISTRY, NAME, reg._REGISTRY[NAME])  # removed again after the test


@pytest.fixture()
def served_model(server, monkeypatch):
    """``NAME`` with a default tag ``web`` served by :func:`server` (right sha256) and a tag ``bad`` (wrong one)."""
    base, root = server
    torch.manual_seed(7)
    ref = Tiny()
    from safetensors.torch import save_file

    save_file(ref.state_dict(), str(root / "tiny.safetensors"))
    sha = hashlib.sha256((root / "tiny.safetensors").read_bytes()).hexdigest()
    (root / "other.safetensors").write_bytes((root / "tiny.safetensors").read_bytes())
    _register(
        monkeypatch,
        {
            "web": WeightSource(url=f"{base}/tiny.safetensors", sha256=sha, filename="tiny.safetensors"),
            "bad": WeightSource(url=f"{base}/other.safetensors", sha256="0" * 64, filename="other.safetensors"),
        },
        "web",
    )
    return ref


def test_fetch_then_load_offline_from_emovid_home(online, served_model, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "for-cluster"
    assert main(["weights", "fetch", NAME, "--to", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}.web: {dest / 'weights' / 'tiny.safetensors'}" in out and "EMOVID_HOME" in out
    assert not (online / "weights").exists()  # --to, not the usual home
    # the offline machine: EMOVID_HOME points at the copied folder, nothing may download
    monkeypatch.setenv("EMOVID_HOME", str(dest))
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    model = create_model(NAME, pretrained=default_weights(NAME, None))
    for k, v in served_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert model.load_report.source == str(dest / "weights" / "tiny.safetensors")


def test_checksum_mismatch_is_refused(online, served_model, capsys):
    assert main(["weights", "fetch", f"{NAME}.bad"]) == 1
    err = capsys.readouterr().err
    assert "does not match its sha256" in err and "other.safetensors" in err and "\n" not in err.strip()
    assert not (online / "weights" / "other.safetensors").exists()  # never kept
    # a cached file that changed since is refused too
    (online / "weights").mkdir(parents=True, exist_ok=True)
    (online / "weights" / "tiny.safetensors").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="checksum mismatch"):
        hub.fetch_weights([NAME])


def test_fetch_names_unknown_tags_before_downloading(online, served_model):
    with pytest.raises(ModelError, match=r"no weights 'nope' \(tags: bad, web"):
        hub.fetch_weights([NAME, f"{NAME}.nope"])
    assert not (online / "weights").exists()
    with pytest.raises(ModelError, match="has no default weights"):
        hub.fetch_weights(["test_x3d"])


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_unreachable_host_fails_at_once_and_says_everything(online, monkeypatch, kind, closed_port, silent_port):
    port = closed_port if kind == "closed" else silent_port
    url = f"http://127.0.0.1:{port}/zoo/X3D_S.pyth?sig=SECRET"
    _register(monkeypatch, {"k400": WeightSource(url=url, filename="X3D_S.pyth")}, "k400")
    t = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as e:
        create_model(NAME, pretrained=default_weights(NAME, None))
    assert time.monotonic() - t < 3.0  # not the 25-60 s of the download client's own retries
    msg = str(e.value)
    assert "\n" not in msg and "SECRET" not in msg  # one line; no access tokens from the URL
    for part in (
        str(online / "weights" / "X3D_S.pyth"),  # where to put it
        f"http://127.0.0.1:{port}/zoo/X3D_S.pyth",
        f"emovid weights fetch {NAME}.k400",
        "EMOVID_OFFLINE=1",
        "EMOVID_HOME",
        "--pretrained none",
    ):
        assert part in msg, part


def test_hub_download_fails_at_once_when_the_hub_is_silent(online, monkeypatch, silent_port):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_port}")
    monkeypatch.setenv("EMOVID_NETWORK_TIMEOUT", "0.5")  # the default (2 s) is timed above
    t = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as e:
        hub.resolve("hf-hub:someorg/somemodel/weights.bin")
    assert time.monotonic() - t < 3.0
    msg = str(e.value)
    assert "`hf download someorg/somemodel weights.bin`" in msg and "EMOVID_OFFLINE=1" in msg
    assert "local-dir:FOLDER" in msg and str(online / "weights" / "hf") in msg


def test_yunet_fails_at_once_without_network(online, monkeypatch, closed_port):
    from emovid.faces.detect import create_detector

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    t = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as e:
        create_detector("yunet")
    assert time.monotonic() - t < 3.0
    msg = str(e.value)
    assert "hf download opencv/face_detection_yunet face_detection_yunet_2023mar.onnx" in msg
    assert "emovid weights fetch yunet" in msg and "--detector yunet:PATH" in msg and "Connection refused" in msg


def test_emovid_home_and_the_older_emovid_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("EMOVID_HOME", raising=False)
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path / "old"))
    assert hub.cache_dir() == tmp_path / "old" / "weights"
    monkeypatch.setenv("EMOVID_HOME", str(tmp_path / "new"))
    assert hub.cache_dir() == tmp_path / "new" / "weights" and hub.hf_cache_dir() == tmp_path / "new" / "weights" / "hf"
    with hub.use_home(tmp_path / "fetch"):
        assert hub.cache_dir() == tmp_path / "fetch" / "weights"
    assert hub.cache_dir() == tmp_path / "new" / "weights"


def test_default_weights_rules(monkeypatch):
    _register(monkeypatch, {"a": WeightSource(url="file:///nowhere/a.pth")}, "a")
    assert default_weights(NAME, None) == "a" and default_weights(NAME, True) == "a"
    for off in ("none", "random", "None", False):
        assert default_weights(NAME, off) is None
    assert default_weights(NAME, "x.pth") == "x.pth"
    assert default_weights("test_x3d", None) is None  # test models have no default tag: random init


def test_train_and_extract_start_from_the_default_weights(online, served_model, monkeypatch):
    from emovid.cli.models import model_rows
    from emovid.extract import load_extractor
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model, weights_note

    hub.fetch_weights([NAME])
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    cached = online / "weights" / "tiny.safetensors"
    cfg = TrainConfig(task="intensity", model=NAME)
    task = get_task("intensity")(cfg)
    model = build_task_model(cfg, task)
    torch.testing.assert_close(model.feature_extractor.proj.weight, served_model.proj.weight)
    assert weights_note(cfg, task, model) == f"{NAME}: weights web ({cached})"
    # list-models marks the same tag as the default
    assert model_rows(NAME, include_test=True)[0]["weights"]["web"]["default"] is True
    for off in ("none", "random"):
        cfg = TrainConfig(task="intensity", model=NAME, pretrained=off)
        model = build_task_model(cfg, task)
        assert weights_note(cfg, task, model) == f"{NAME}: random init (--pretrained none)"
    ext = load_extractor(model=NAME)
    assert ext.pretrained == "web"
    torch.testing.assert_close(ext.backbone.proj.weight, served_model.proj.weight)
