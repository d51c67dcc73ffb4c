"""``emovid extract``: feature files, manifest, failures, resume after interruption, checkpoints, sharding."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import emovid.cli.extract  # noqa: F401  (registers the command until the CLI auto-imports it)
from emovid.cli import main
from emovid.errors import ConfigError, InputNotFoundError
from emovid.extract import (
    MANIFEST,
    extract_features,
    list_videos,
    merge_journals,
    read_manifest,
)
from emovid.models import create_model, create_transform
from emovid.models.base import pooled
from emovid.utils.io import read_jsonl
from emovid.video import read_frames, sliding_window_indices, uniform_indices, write_video
from emovid.video.transforms import to_tensor

VIDEOS = ["00000.mp4", "short.mp4", "sub/00001.mp4", "sub/deeper/00002.mp4"]
NO_BAR = {"num_workers": 0, "accelerator": "cpu", "devices": 1, "progress": False}
CLI = ["--accelerator", "cpu", "--devices", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models on a shared machine: thread start-up costs more than it gains.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """Three 1 s synthetic videos (15 frames at 15 fps) in nested folders plus a 5-frame one."""
    from emovid.data.synth import generate

    base = tmp_path_factory.mktemp("extract")
    generate(base / "synth", num_videos=3, size=64, seconds=1.0, workers=0)
    root = base / "videos"
    for i, rel in enumerate(["00000.mp4", "sub/00001.mp4", "sub/deeper/00002.mp4"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "synth" / "videos" / f"0000{i}.mp4", root / rel)
    rng = np.random.default_rng(0)
    write_video(root / "short.mp4", rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8), fps=15)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """test_x3d with fixed random weights saved as a file, and the model holding them."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = create_model("test_x3d", num_classes=0).eval()
    path = tmp_path_factory.mktemp("weights") / "test_x3d.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def sha16(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def reference_clips(model, path: Path, clips: list[list[int]]) -> torch.Tensor:
    """Decode and preprocess clips independently of the extraction code: ``[N, C, T, H, W]``."""
    pc = model.pretrained_cfg
    short = pc.short_side or min(pc.input_size)
    h, w = 64, 64
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    frames = read_frames(path, [i for c in clips for i in c], size=size)
    tf = create_transform(pc, train=False)
    t = len(clips[0])
    return torch.stack([tf(to_tensor(frames[k * t : (k + 1) * t])) for k in range(len(clips))])


def sliding_clips(path: Path) -> list[list[int]]:
    from emovid.video import probe

    return sliding_window_indices(probe(path).num_frames, 4, hop=7, stride=2)  # test_x3d: 4 frames every 2


@torch.inference_mode()
def reference(model, path: Path) -> torch.Tensor:
    return pooled(model, reference_clips(model, path, sliding_clips(path)))


def run_cli(*args: str, workers: int = 0) -> int:
    return main(["extract", *args, *CLI, "--num-workers", str(workers)])


# ---- shapes, values, manifest -----------------------------------------------------------------------------------


def test_npy_mean_files_values_and_manifest(video_root, weights, tmp_path):
    wpath, model = weights
    out = tmp_path / "out"
    s = extract_features(video_root, out, model="test_x3d", pretrained=str(wpath), **NO_BAR)
    assert (s["videos"], s["done"], s["skipped"], s["failed"]) == (4, 4, 0, 0)
    assert s["dim"] == model.num_features == 32 and s["weights_sha256"] == sha16(wpath)
    assert s["sampler"] == "sliding:4x2:7" and s["aggregate"] == "mean"

    manifest = read_jsonl(out / MANIFEST)
    assert [m["video"] for m in manifest] == VIDEOS  # one line per video, sorted
    for m in manifest:
        feats = np.load(out / m["output"])
        assert m["output"] == m["video"][:-4] + ".npy"
        assert feats.dtype == np.float32 and feats.shape == (32,)
        n_clips = len(sliding_clips(video_root / m["video"]))
        assert m["clips"] == n_clips and m["dim"] == 32 and m["shape"] == [32]
        assert (m["model"], m["pretrained"], m["checkpoint"]) == ("test_x3d", str(wpath), None)
        assert m["weights_sha256"] == sha16(wpath) and m["format"] == "npy"
        ref = reference(model, video_root / m["video"]).mean(0).numpy()
        np.testing.assert_allclose(feats, ref, atol=1e-5, rtol=0)
    # 15 frames: windows at 0 and 7 plus one aligned to the end; 5 frames: one padded clip
    assert {m["video"]: m["clips"] for m in manifest}["00000.mp4"] == 3
    assert {m["video"]: m["clips"] for m in manifest}["short.mp4"] == 1
    assert not list(out.glob("*.rank*.jsonl")) and not (out / "failures.jsonl").exists()
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_cli_npy_per_clip_rows_and_resume_from_partial_list(video_root, weights, tmp_path, capsys):
    wpath, model = weights
    out = tmp_path / "out"
    lst = tmp_path / "some.txt"
    lst.write_text("# first two\nsub/00001.mp4\n00000.mp4\n\n")
    args = ["--model", "test_x3d", "--pretrained", str(wpath), "--video-root", str(video_root), "--output-dir"]
    assert run_cli(*args, str(out), "--list", str(lst), "--aggregate", "none") == 0
    assert "2 done, 0 skipped, 0 failed of 2 videos" in capsys.readouterr().out
    assert sorted(m["video"] for m in read_jsonl(out / MANIFEST)) == ["00000.mp4", "sub/00001.mp4"]
    first = (out / "00000.npy").stat().st_mtime_ns

    assert run_cli(*args, str(out), "--aggregate", "none") == 0  # now all videos
    assert "2 done, 2 skipped, 0 failed of 4 videos" in capsys.readouterr().out
    assert (out / "00000.npy").stat().st_mtime_ns == first  # finished files are not recomputed
    manifest = read_jsonl(out / MANIFEST)
    assert [m["video"] for m in manifest] == VIDEOS
    for m in manifest:
        rows = np.load(out / m["output"])
        clips = sliding_clips(video_root / m["video"])
        assert rows.shape == (len(clips), 32) and m["shape"] == [len(clips), 32] and m["clips"] == len(clips)
        np.testing.assert_allclose(rows, reference(model, video_root / m["video"]).numpy(), atol=1e-5, rtol=0)

    assert run_cli(*args, str(out), "--aggregate", "none") == 0  # nothing left to do
    assert "0 done, 4 skipped, 0 failed" in capsys.readouterr().out
    assert len(read_jsonl(out / MANIFEST)) == 4


def test_pt_layout_per_clip_and_aggregated(video_root, weights, tmp_path):
    wpath, model = weights
    out = tmp_path / "pt"
    s = extract_features(video_root, out, model="test_x3d", pretrained=str(wpath), fmt="pt", **NO_BAR)
    assert s["aggregate"] == "none"
    for m in read_jsonl(out / MANIFEST):
        d = torch.load(out / m["output"], weights_only=True)
        assert m["output"].endswith(".pt") and set(d) == {"emb", "length"}
        n = len(sliding_clips(video_root / m["video"]))
        assert d["emb"].shape == (n, 32) and d["length"] == n and d["emb"].dtype == torch.float32
        torch.testing.assert_close(d["emb"], reference(model, video_root / m["video"]), atol=1e-5, rtol=0)

    out2 = tmp_path / "ptmax"
    extract_features(
        video_root,
        out2,
        model="test_x3d",
        pretrained=str(wpath),
        fmt="pt",
        aggregate="max",
        videos=["00000.mp4"],
        **NO_BAR,
    )
    d = torch.load(out2 / "00000.pt", weights_only=True)
    assert d["length"] == 1 and d["emb"].shape == (1, 32)
    ref = reference(model, video_root / "00000.mp4").max(0).values
    torch.testing.assert_close(d["emb"][0], ref, atol=1e-5, rtol=0)


def test_uniform_clips_and_single_frame_model(video_root, tmp_path):
    out = tmp_path / "uni"
    s = extract_features(
        video_root, out, model="test_x3d", clips="uniform:4", aggregate="none", videos=["00000.mp4"], **NO_BAR
    )
    assert s["sampler"] == "uniform:4" and np.load(out / "00000.npy").shape == (1, 32)

    # A single-frame (face/image) model: every sampled frame is a clip of one frame, fed as an image.
    out = tmp_path / "frames"
    torch.manual_seed(0)
    emonext = create_model("test_emonext", num_classes=0).eval()
    s = extract_features(video_root, out, model=emonext, clips="uniform:5", fmt="pt", videos=["00000.mp4"], **NO_BAR)
    assert s["sampler"] == "uniform:5:frames" and s["weights_sha256"]
    d = torch.load(out / "00000.pt", weights_only=True)
    assert d["emb"].shape == (5, 64) and d["length"] == 5
    x = reference_clips(emonext, video_root / "00000.mp4", [[i] for i in uniform_indices(15, 5)])
    with torch.inference_mode():
        ref = pooled(emonext, x[:, :, 0])
    torch.testing.assert_close(d["emb"], ref, atol=1e-5, rtol=0)


# ---- failures, interruption, resume -----------------------------------------------------------------------------


def test_corrupt_video_is_listed_and_retried(video_root, tmp_path, capsys):
    root = tmp_path / "videos"
    shutil.copytree(video_root, root)
    (root / "sub" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "out"
    # decoded in a DataLoader worker process: the error comes back as an item, not an exception
    assert run_cli("--model", "test_x3d", "--video-root", str(root), "--output-dir", str(out), workers=1) == 1
    text = capsys.readouterr().out
    assert "4 done, 0 skipped, 1 failed of 5 videos" in text and "failures.jsonl" in text
    fails = read_jsonl(out / "failures.jsonl")
    assert [f["video"] for f in fails] == ["sub/broken.mp4"] and "broken.mp4" in fails[0]["error"]
    assert [m["video"] for m in read_jsonl(out / MANIFEST)] == VIDEOS
    assert not (out / "sub" / "broken.npy").exists()

    # Fixed on disk: the rerun retries it, and failures.jsonl goes away. (Without --pretrained the random weights
    # come from a fixed seed, so the rerun has the same model.)
    shutil.copy(root / "00000.mp4", root / "sub" / "broken.mp4")
    assert run_cli("--model", "test_x3d", "--video-root", str(root), "--output-dir", str(out)) == 0
    assert "1 done, 4 skipped, 0 failed of 5 videos" in capsys.readouterr().out
    assert not (out / "failures.jsonl").exists()
    assert [m["video"] for m in read_jsonl(out / MANIFEST)] == sorted([*VIDEOS, "sub/broken.mp4"])


def test_a_video_the_model_cannot_take_is_recorded_and_the_run_goes_on(video_root, weights, tmp_path):
    model = create_model("test_x3d", num_classes=0).eval()
    model.load_state_dict(weights[1].state_dict())
    real = model.forward_features
    calls = {"n": 0}

    def fail_second(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("Given groups=1, weight of size [8, 3, 1, 3, 3], expected input to have 3 channels")
        return real(x)

    model.forward_features = fail_second
    s = extract_features(video_root, tmp_path / "out", model=model, **NO_BAR)
    assert (s["done"], s["failed"]) == (3, 1)
    (bad,) = read_jsonl(tmp_path / "out" / "failures.jsonl")
    assert bad["type"] == "RuntimeError" and bad["error"].startswith("unexpected RuntimeError: Given groups=1")


def test_interrupted_extraction_resumes_every_file_once(video_root, weights, tmp_path):
    model = create_model("test_x3d", num_classes=0).eval()
    model.load_state_dict(weights[1].state_dict())
    out = tmp_path / "out"
    real = model.forward_features
    calls = {"n": 0}

    def crash_after_two(x):
        calls["n"] += 1
        if calls["n"] > 2:
            raise MemoryError("simulated crash")  # not one video's fault: the run stops (a RuntimeError is recorded)
        return real(x)

    model.forward_features = crash_after_two
    with pytest.raises(MemoryError, match="simulated crash"):
        extract_features(video_root, out, model=model, **NO_BAR)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    assert written == ["00000.npy", "short.npy"]  # the first two videos, complete; nothing partial
    assert not [p for p in out.rglob(".*")]
    assert not (out / MANIFEST).exists()  # never merged: the crash came first
    assert sorted(read_manifest(out)) == ["00000.mp4", "short.mp4"]  # ... but journalled
    before = {p: (out / p).stat().st_mtime_ns for p in written}

    del model.forward_features  # the same weights, working again
    s = extract_features(video_root, out, model=model, **NO_BAR)
    assert (s["done"], s["skipped"], s["failed"]) == (2, 2, 0)
    assert {p: (out / p).stat().st_mtime_ns for p in written} == before
    manifest = read_jsonl(out / MANIFEST)
    assert [m["video"] for m in manifest] == VIDEOS  # each video exactly once
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == [
        "00000.npy",
        "short.npy",
        "sub/00001.npy",
        "sub/deeper/00002.npy",
    ]
    assert not list(out.glob("*.rank*.jsonl"))
    for m in manifest:
        np.testing.assert_allclose(
            np.load(out / m["output"]), reference(model, video_root / m["video"]).mean(0).numpy(), atol=1e-5, rtol=0
        )


def test_file_without_manifest_line_is_recomputed_and_listed_once(video_root, weights, tmp_path):
    wpath, _ = weights
    out = tmp_path / "out"
    extract_features(video_root, out, model="test_x3d", pretrained=str(wpath), videos=["00000.mp4"], **NO_BAR)
    good = np.load(out / "00000.npy")
    (out / MANIFEST).unlink()  # as if the run died between the rename and the journal line
    np.save(out / "00000.npy", np.zeros(3, np.float32))
    s = extract_features(video_root, out, model="test_x3d", pretrained=str(wpath), videos=["00000.mp4"], **NO_BAR)
    assert (s["done"], s["skipped"]) == (1, 0)
    np.testing.assert_allclose(np.load(out / "00000.npy"), good, atol=1e-6)
    assert [m["video"] for m in read_jsonl(out / MANIFEST)] == ["00000.mp4"]


def test_merge_journals_dedups_and_drops_recovered_failures(tmp_path):
    out = tmp_path
    (out / MANIFEST).write_text(json.dumps({"video": "a.mp4", "output": "a.npy", "v": 1}) + "\n")
    (out / "manifest.rank0.jsonl").write_text(json.dumps({"video": "b.mp4", "output": "b.npy"}) + "\n")
    (out / "manifest.rank1.jsonl").write_text(
        json.dumps({"video": "a.mp4", "output": "a.npy", "v": 2}) + "\n" + '{"video": "c.mp4", "outp'  # torn line
    )
    (out / "failures.jsonl").write_text(json.dumps({"video": "b.mp4", "error": "old"}) + "\n")
    (out / "failures.rank1.jsonl").write_text(json.dumps({"video": "d.mp4", "error": "bad"}) + "\n")
    assert merge_journals(out) == (2, 1)
    manifest = read_jsonl(out / MANIFEST)
    assert [(m["video"], m.get("v")) for m in manifest] == [("a.mp4", 2), ("b.mp4", None)]
    assert read_jsonl(out / "failures.jsonl") == [{"video": "d.mp4", "error": "bad"}]
    assert sorted(p.name for p in out.iterdir()) == ["failures.jsonl", MANIFEST]


# ---- checkpoint folders -----------------------------------------------------------------------------------------


def test_checkpoint_folder(video_root, tmp_path, capsys):
    from emovid.config import TrainConfig
    from emovid.tasks import get_task
    from emovid.train import save_model_dir

    ckpt = tmp_path / "ckpt"
    cfg = TrainConfig(task="intensity", model="test_x3d", output_dir=str(ckpt))
    torch.manual_seed(1)
    scorer = get_task("intensity")(cfg).build_model(create_model("test_x3d", num_classes=0))
    save_model_dir(scorer, cfg, ckpt)
    out = tmp_path / "out"
    assert (
        run_cli(
            "--checkpoint",
            str(ckpt),
            "--video-root",
            str(video_root),
            "--output-dir",
            str(out),
            "--format",
            "pt",
            "--list",
            str(_csv_list(tmp_path)),
        )
        == 0
    )
    assert "2 done" in capsys.readouterr().out
    manifest = read_jsonl(out / MANIFEST)
    assert [m["video"] for m in manifest] == ["00000.mp4", "sub/deeper/00002.mp4"]
    fe = scorer.feature_extractor.eval()
    for m in manifest:
        assert m["checkpoint"] == str(ckpt) and m["model"] == "test_x3d"
        assert m["weights_sha256"] == sha16(ckpt / "model.safetensors")
        d = torch.load(out / m["output"], weights_only=True)
        torch.testing.assert_close(d["emb"], reference(fe, video_root / m["video"]), atol=1e-5, rtol=0)


def _csv_list(tmp_path: Path) -> Path:
    p = tmp_path / "intensity.csv"  # RankNet-X3D's label CSV doubles as a list
    p.write_text("video_path,intensity_score\n00000.mp4,0.5\nsub/deeper/00002.mp4,0.1\n")
    return p


# ---- bad input --------------------------------------------------------------------------------------------------


def test_bad_input_is_one_clear_line(video_root, weights, tmp_path, capsys):
    wpath, _ = weights
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    not_ckpt = tmp_path / "not_ckpt"
    not_ckpt.mkdir()
    vr = ["--video-root", str(video_root)]
    od = ["--output-dir", str(tmp_path / "o")]
    cases = [
        (["--model", "test_x3d", *od], "--video-root"),
        (["--model", "test_x3d", "--video-root", str(tmp_path / "nope"), *od], "no such video folder"),
        (["--model", "test_x3d", *vr], "--output-dir"),
        (["--model", "test_x3d", *vr, *od, "--list", str(empty)], "lists no videos"),
        (["--model", "test_x3d", *vr, *od, "--list", str(tmp_path / "missing.txt")], "no such list file"),
        (["--model", "x3d_nonexistent", *vr, *od], "unknown model"),
        (["--checkpoint", str(not_ckpt), *vr, *od], "not an emovid checkpoint folder"),
        (["--checkpoint", str(tmp_path / "gone"), *vr, *od], "no such checkpoint folder"),
        ([*vr, *od], "either --checkpoint"),
        (["--model", "test_x3d", "--checkpoint", str(not_ckpt), *vr, *od], "either --checkpoint"),
        (["--model", "test_x3d", *vr, *od, "--format", "h5"], "--format"),
        (["--model", "test_x3d", *vr, *od, "--aggregate", "median"], "--aggregate"),
        (["--model", "test_x3d", *vr, *od, "--clips", "sliding:abc"], "bad sampler spec"),
        (["--model", "test_x3d", "--pretrained", str(tmp_path / "none.pth"), *vr, *od], "none.pth"),
    ]
    for args, needle in cases:
        code = run_cli(*args)
        err = capsys.readouterr().err
        assert code != 0, args
        lines = [ln for ln in err.splitlines() if ln.startswith("emovid: error:")]
        assert len(lines) == 1 and needle in lines[0], (args, err)
        assert "Traceback" not in err


def test_rerun_with_other_settings_is_refused_unless_overwrite(video_root, weights, tmp_path, capsys):
    wpath, _ = weights
    out = tmp_path / "out"
    common = [
        "--model",
        "test_x3d",
        "--pretrained",
        str(wpath),
        "--video-root",
        str(video_root),
        "--output-dir",
        str(out),
        "--list",
        str(_csv_list(tmp_path)),
    ]
    assert run_cli(*common) == 0
    assert run_cli(*common, "--aggregate", "max") == 1
    err = capsys.readouterr().err
    assert "aggregate='mean'" in err and "--overwrite" in err
    assert run_cli(*common, "--aggregate", "max", "--overwrite") == 0
    manifest = read_jsonl(out / MANIFEST)
    assert len(manifest) == 2 and {m["aggregate"] for m in manifest} == {"max"}


def test_list_videos(video_root, tmp_path):
    assert list_videos(video_root) == VIDEOS
    lst = tmp_path / "l.txt"
    lst.write_text(f"{video_root / 'sub' / '00001.mp4'}\nshort.mp4\nshort.mp4\n")
    assert list_videos(video_root, lst) == ["short.mp4", "sub/00001.mp4"]
    lst.write_text(f"{tmp_path / 'elsewhere.mp4'}\n")
    with pytest.raises(ConfigError, match="outside --video-root"):
        list_videos(video_root, lst)
    with pytest.raises(InputNotFoundError):
        list_videos(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no video files"):
        list_videos(_empty_dir(tmp_path))
    with pytest.raises(ConfigError, match="would both be written"):
        extract_features(video_root, tmp_path / "o", model="test_x3d", videos=["a.mp4", "a.mkv"], **NO_BAR)


def _empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "emptydir"
    d.mkdir()
    return d


# ---- sharding -----------------------------------------------------------------------------------------------------


def test_two_ranks_shard_the_videos(video_root, weights, tmp_path):
    """DDP on two CPU processes (gloo): each video computed once, journals merged by rank 0."""
    wpath, model = weights
    out = tmp_path / "ddp"
    s = extract_features(
        video_root,
        out,
        model="test_x3d",
        pretrained=str(wpath),
        num_workers=0,
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        progress=False,
    )
    assert (s["done"], s["failed"]) == (4, 0)
    manifest = read_jsonl(out / MANIFEST)
    assert [m["video"] for m in manifest] == VIDEOS
    assert {m["rank"] for m in manifest} == {0, 1}
    assert not list(out.glob("*.rank*.jsonl"))
    for m in manifest:
        ref = reference(model, video_root / m["video"]).mean(0).numpy()
        np.testing.assert_allclose(np.load(out / m["output"]), ref, atol=1e-5, rtol=0)


def test_model_choice_and_default_clips(weights):
    from emovid.extract import default_clips, load_extractor, make_sampler

    wpath, model = weights
    state = torch.get_rng_state()
    a, b = load_extractor(model="test_x3d"), load_extractor(model="test_x3d")
    assert torch.equal(torch.get_rng_state(), state)  # the fixed seed does not disturb the caller's RNG
    assert a.weights_sha256 == b.weights_sha256 and a.pretrained is None  # same random weights on every rank
    for k, v in a.backbone.state_dict().items():
        assert torch.equal(v, b.backbone.state_dict()[k])
    c = load_extractor(model="test_x3d", pretrained=str(wpath))
    assert c.weights_sha256 == sha16(wpath) != a.weights_sha256
    for k, v in model.state_dict().items():
        assert torch.equal(v, c.backbone.state_dict()[k])

    x3d = create_model("test_x3d").pretrained_cfg  # 4 frames every 2: span 7
    assert default_clips(x3d) == "sliding:4x2:7"
    assert default_clips(create_model("test_videomae").pretrained_cfg) == "sliding:4x2:7"
    face = create_model("test_emonext").pretrained_cfg
    assert default_clips(face) == "uniform:30"
    frames = make_sampler(face)
    assert str(frames) == "uniform:30:frames" and frames(15) == [[i] for i in uniform_indices(15, 30)]
    assert make_sampler(x3d)(15) == sliding_window_indices(15, 4, hop=7, stride=2)
