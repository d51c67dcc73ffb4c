"""Hundreds of malformed inputs through every command: each ends in a clean error, a warning or a recorded failure.

Never a traceback, an exit code 3 (an unexpected exception), a hang (the harness's watchdog), a lost input or a
marker file made by a payload. The corpus is built once (tests/hostile.py); each batch command runs once over
the whole folder of bad videos (plus clean ones), and each case is then checked on its own.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from hostile import build_video_corpus, python_name, run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = build_video_corpus(root / "videos", root / "work")
    return root, cases


def _cases():
    # The case list must be known at collection time: build a throw-away copy of the names (cheap: no video work).
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return build_video_corpus(Path(d) / "v", Path(d) / "w")


CASES = _cases()
IDS = [f"{c.family}-{python_name(c.name)}" for c in CASES]


def _batch(corpus, name, argv, timeout=240):
    root, cases = corpus
    key = f"_run_{name}"
    cache = _batch.__dict__.setdefault("cache", {})
    if (root, key) not in cache:
        out = root / f"out_{name}"
        res = run_cli([a.replace("{VIDEOS}", str(root / "videos")).replace("{OUT}", str(out)) for a in argv], timeout)
        cache[(root, key)] = (res, out)
    return cache[(root, key)]


def _failures(path: Path, key: str) -> dict[str, dict]:
    if not path.exists():
        return {}
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {os.path.basename(r[key]): r for r in recs}


def _check_case(case, res, done: dict[str, dict], failures: dict[str, dict]):
    """One case's outcome in a batch run: processed, failed with a clean reason, or left out with a warning."""
    assert not res.problems, res.problems
    assert res.rc == (1 if failures else 0)
    if case.special:
        assert case.name not in done and case.name not in failures
        assert "not read" in res.err and python_name(case.name).split(".")[0] in res.err
        return
    assert (case.name in done) != (case.name in failures), "each input is either done or failed"
    if case.name in failures:
        err = failures[case.name]["error"]
        assert not err.startswith("unexpected") and "\n" not in err.strip(), err
    elif case.damaged:
        assert done[case.name].get("damaged"), "a damaged video was processed without a word"
        assert " damaged, see warnings)" in res.out and "damaged video" in res.err
    if case.family in ("clean", "names"):
        assert case.name in done, failures.get(case.name)


ANALYZE = ["analyze", "{VIDEOS}", "-o", "{OUT}", "--no-progress", "--fps", "4"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_analyze_folder(corpus, case):
    res, out = _batch(corpus, "analyze", ANALYZE)
    done = {}
    for p in out.rglob("*.json"):
        if p.name != "failures.jsonl":
            rec = json.loads(p.read_text(encoding="utf-8"))
            if "input" in rec:
                done[os.path.basename(rec["input"])] = rec
    _check_case(case, res, done, _failures(out / "failures.jsonl", "input"))


EXTRACT = ["extract", "--model", "test_x3d", "--video-root", "{VIDEOS}", "-o", "{OUT}", "--num-workers", "0"]
EXTRACT += ["--no-progress", "--accelerator", "cpu", "--devices", "1"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_extract_folder(corpus, case):
    res, out = _batch(corpus, "extract", EXTRACT)
    manifest = _failures(out / "manifest.jsonl", "video")
    for rec in manifest.values():
        assert (out / rec["output"]).exists()
    _check_case(case, res, manifest, _failures(out / "failures.jsonl", "video"))


EMBED = ["faces", "embed", "--split", "train", "--base_path", "{VIDEOS}", "--output_root", "{OUT}"]
EMBED += ["--model", "test_emonext", "--pretrained", "none", "--num-crops", "4", "--no-progress"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_faces_embed_folder(corpus, case):
    import torch

    res, out = _batch(corpus, "embed", EMBED)
    done = {}
    stems = {Path(c.name).stem: c.name for c in CASES}
    for p in (out / "train").glob("*.pt"):
        done[stems.get(p.stem, p.name)] = torch.load(p, weights_only=True)
    _check_case(case, res, done, _failures(out / "train" / "failures.jsonl", "video"))


INDEX = ["index", "build", "--videos", "{VIDEOS}", "-o", "{OUT}", "--zero-shot", "--no-progress"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_index_build_folder(corpus, case):
    res, out = _batch(corpus, "index", INDEX)
    done = {}
    meta = out / "meta.jsonl"
    for line in meta.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        done[os.path.basename(row["path"])] = row
    _check_case(case, res, done, _failures(out / "failures.jsonl", "video"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_probe_each(corpus, case):
    root, _ = corpus
    res = run_cli(["probe", str(root / "videos" / case.name)], timeout=20)
    assert not res.problems, (res.problems, res.err)
    if res.rc == 1:
        assert len([ln for ln in res.err.splitlines() if ln.startswith("emovid: error:")]) == 1
    if case.damaged:
        assert res.rc == 1 or "damaged" in (res.out + res.err).lower()


@pytest.mark.parametrize("name", ["fifo.mp4", "dev_zero.mp4", "dir.mp4", "broken_link.mp4"])
def test_special_file_given_directly_is_refused_before_opening(corpus, name, tmp_path):
    root, _ = corpus
    res = run_cli(["analyze", str(root / "videos" / name), "-o", str(tmp_path / "o"), "--no-progress"], timeout=20)
    assert not res.problems and res.rc == 1, (res.problems, res.err)


# ---- label files ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_synth")
    assert run_cli(["synth", str(root / "s"), "--videos", "6", "--seed", "0"], timeout=120).rc == 0
    return root / "s"


DEEP = b"[" * 200000 + b"]" * 200000
HUGE = b"1" + b"0" * 6000

#: format -> (label file inside the synth folder, what `data check` is given, `train` arguments or None)
FORMATS = {
    "vce": ("vce/train_labels.json", "vce", ["train", "vce", "--data", "{DIR}", "--model", "test_videomae"]),
    "v2v": ("v2v/train_labels.json", "v2v", ["train", "v2v", "--data", "{DIR}", "--model", "test_videomae"]),
    "captions": ("captions.json", "captions.json", ["train", "retrieval", "--data", "{FILE}"]),
    "intensity": (
        "intensity.csv",
        "intensity.csv",
        ["train", "intensity", "--data_csv", "{FILE}", "--model", "test_x3d"],
    ),
    "mosei": ("mosei.csv", "mosei.csv", None),
    "va": ("va.csv", "va.csv", ["train", "valence_arousal", "--data", "{FILE}", "--model", "test_resnet18_3dstem_gru"]),
    "msrvtt": ("msrvtt_captions.json", "msrvtt_captions.json", None),
    "fiv2": ("fiv2/annotation_training.pkl", "fiv2", None),
}


def _mutations(original: bytes, is_json: bool, is_pickle: bool) -> dict[str, bytes | None]:
    m: dict[str, bytes | None] = {
        "empty": b"",
        "binary": bytes(range(256)) * 8,
        "not_utf8": b"\xff\xfe\xfa" + original[:200],
        "nul_bytes": original[: len(original) // 2] + b"\x00\x00" + original[len(original) // 2 :],
        "cut_half": original[: len(original) // 2],
        "bom": b"\xef\xbb\xbf" + original,
        "fifo": None,  # made a FIFO
    }
    if is_json:
        m.update({"deep": DEEP, "huge_int": b'{"a": ' + HUGE + b"}", "list_not_dict": b"[1, 2, 3]", "null": b"null"})
        m["huge_value"] = original.replace(b"0.", HUGE + b".", 1)
    elif is_pickle:
        m["evil"] = b"cos\nsystem\n(S'touch MARKER'\ntR."
        m["evil_proto2"] = pickle.dumps(_Evil(), protocol=2)
    else:
        m.update({"header_only": original.splitlines(keepends=True)[0], "huge_int": original + HUGE + b"\n"})
        m["wide"] = original.splitlines(keepends=True)[0] + b",".join([b"1"] * 100000) + b"\n"
    return m


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch MARKER",))


LABEL_CASES = []
for fmt, (rel, _, _) in FORMATS.items():
    for mut in _mutations(b"x0.5\nx", rel.endswith(".json"), rel.endswith(".pkl")):
        LABEL_CASES.append((fmt, mut))


def _mutated(synth: Path, tmp_path: Path, fmt: str, mut: str) -> tuple[Path, Path]:
    rel, target, _ = FORMATS[fmt]
    top = rel.split("/")[0] if "/" in rel else None
    dst = tmp_path / "data"
    if top:
        shutil.copytree(synth / top, dst / top, symlinks=True)
    else:
        dst.mkdir()
        (dst / rel).write_bytes((synth / rel).read_bytes())
    (dst / "videos").symlink_to(synth / "videos")
    if fmt == "fiv2":
        pass
    label = dst / rel
    blob = _mutations(label.read_bytes(), rel.endswith(".json"), rel.endswith(".pkl"))[mut]
    label.unlink()
    if blob is None:
        os.mkfifo(label)
    else:
        blob = blob.replace(b"MARKER", os.fsencode(tmp_path / "MARKER"))
        label.write_bytes(blob)
    return dst, dst / target


@pytest.mark.parametrize(("fmt", "mut"), LABEL_CASES, ids=[f"{f}-{m}" for f, m in LABEL_CASES])
def test_data_check_on_mutated_labels(synth, tmp_path, fmt, mut, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dst, target = _mutated(synth, tmp_path, fmt, mut)
    argv = ["data", "check", fmt, str(target), "--no-probe"]
    if fmt in ("captions", "msrvtt", "intensity", "va", "mosei"):
        argv += ["--video-root", str(dst / "videos")]
    res = run_cli(argv, timeout=30)
    assert not res.problems, (res.problems, res.err[-400:])
    assert not (tmp_path / "MARKER").exists(), "a pickle payload ran"
    if mut in ("binary", "cut_half", "deep", "huge_int", "fifo", "empty", "evil", "evil_proto2", "list_not_dict"):
        assert res.rc == 1, res.out[-300:]


# Mutations that leave a valid file would train a model: only those that must be refused go through `train`.
MUST_FAIL = ("binary", "cut_half", "deep", "huge_int", "fifo", "empty", "list_not_dict", "null", "header_only")
TRAIN_CASES = [(f, m) for f, m in LABEL_CASES if FORMATS[f][2] is not None and m in MUST_FAIL]


@pytest.mark.parametrize(("fmt", "mut"), TRAIN_CASES, ids=[f"{f}-{m}" for f, m in TRAIN_CASES])
def test_train_refuses_mutated_labels(synth, tmp_path, fmt, mut, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dst, target = _mutated(synth, tmp_path, fmt, mut)
    argv = [a.replace("{DIR}", str(target)).replace("{FILE}", str(target)) for a in FORMATS[fmt][2]]
    argv += ["-o", str(tmp_path / "run"), "--epochs", "1", "--no-progress", "--num-workers", "0"]
    if fmt != "vce" and fmt != "v2v":
        argv += ["--video-root", str(dst / "videos")]
    res = run_cli(argv, timeout=60)
    assert not res.problems, (res.problems, res.err[-400:])
    assert res.rc == 1 and not (tmp_path / "run" / "checkpoints").exists()


def test_bom_captions_train_like_data_check(synth, tmp_path):
    """A UTF-8 BOM at the start of a captions JSON is accepted by both `data check` and `train retrieval`."""
    dst, target = _mutated(synth, tmp_path, "captions", "bom")
    check = run_cli(["data", "check", "captions", str(target), "--no-probe", "--video-root", str(dst / "videos")])
    assert check.rc == 0, check.out
    from emovid.data.readers.captions import read_emotion_captions

    assert len(read_emotion_captions(target, dst / "videos")) > 0
