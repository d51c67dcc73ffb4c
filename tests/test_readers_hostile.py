"""Hostile label files: deep JSON, huge numbers, special files, escaping paths, odd pickles, empty and inconsistent
data. Every reader, in raise and collect mode, and ``emovid data check`` end with a clean one-line message (exit 1)
or a warning (exit 0), never a crash (exit 3), a traceback or a hang."""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading

import numpy as np
import pytest

from emovid.cli import main
from emovid.data import (
    FIV2_TRAITS,
    VCE_EMOTIONS,
    read_emotion_captions,
    read_fiv2,
    read_intensity_csv,
    read_mosei_csv,
    read_msrvtt_captions,
    read_v2v,
    read_va_csv,
    read_vce,
)
from emovid.data.check import check_labels
from emovid.data.readers import _common
from emovid.data.readers.captions import captions_format
from emovid.data.readers.vce import read_vce_metadata
from emovid.errors import EmovidError, InputNotFoundError, LabelFormatError, SpecialFileError

HUGE = "1" + "0" * 5000  # past Python's 4300-digit int() limit
DEEP = "[" * 100_000

READERS = {
    "intensity": lambda p, **kw: read_intensity_csv(p, **kw),
    "mosei": lambda p, **kw: read_mosei_csv(p, **kw),
    "va": lambda p, **kw: read_va_csv(p, **kw),
    "msrvtt_csv": lambda p, **kw: read_msrvtt_captions(p, **kw),
    "vce": lambda p, **kw: read_vce(p, metadata=False, **kw),
    "v2v": lambda p, **kw: read_v2v(p, metadata=False, **kw),
    "vce_metadata": lambda p, **kw: read_vce_metadata(p, **kw),
    "captions": lambda p, **kw: read_emotion_captions(p, **kw),
    "msrvtt_json": lambda p, **kw: read_msrvtt_captions(p, **kw),
    "fiv2": lambda p, **kw: read_fiv2(p, **kw),
}
FILE_NAME = {
    "intensity": "a.csv",
    "mosei": "m.csv",
    "va": "va.csv",
    "msrvtt_csv": "m.csv",
    "vce": "train_labels.json",
    "v2v": "train_labels.json",
    "vce_metadata": "metadata.json",
    "captions": "c.json",
    "msrvtt_json": "m.json",
    "fiv2": "annotation_training.pkl",
}
JSON_READERS = ("vce", "v2v", "vce_metadata", "captions", "msrvtt_json")
CSV_HEADERS = {
    "intensity": "video_path,intensity_score",
    "mosei": "video_id,happy,sad,anger,surprise,disgust,fear",
    "va": "video,time,valence,arousal",
    "msrvtt_csv": "video_id,sentence",
}


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


def _both_modes(kind, path, text, error=LabelFormatError):
    """Raise mode raises one short line naming the file and ``text``; collect mode records the same."""
    with pytest.raises(error) as ei:
        READERS[kind](path)
    msg = _one_line(ei.value)
    assert str(path) in msg and text in msg, msg
    problems = []
    READERS[kind](path, problems=problems)
    assert any(text in p.message for p in problems), problems
    return problems


def _cli(capsys, *args):
    code = main(["data", "check", *map(str, args)])
    cap = capsys.readouterr()
    assert code in (0, 1), (code, cap.err)
    assert "unexpected" not in cap.err and "Traceback" not in cap.err + cap.out
    return code, cap.out, cap.err


def _vce_entry(**over):
    emo = {e: 0.0 for e in VCE_EMOTIONS}
    emo.update(over)
    return {"emotions": emo, "file": "videos/00001.mp4"}


# ---- 1. deep JSON, huge numbers, size limits ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", JSON_READERS)
def test_deep_json_is_a_label_error(tmp_path, kind):
    path = tmp_path / FILE_NAME[kind]
    path.write_text(DEEP)
    problems = _both_modes(kind, path, "nested too deeply")
    assert problems[0].kind == "malformed" and problems[0].path == str(path)


@pytest.mark.parametrize(
    "kind,content,where,text",
    [
        ("vce", None, '"00001".emotions.Anger', "(5001 digits) is too large"),
        ("v2v", '{"comparisons": [["a", %s]]}', "comparisons[0][1]", "(5001 digits)"),
        ("vce_metadata", None, '"00001".width', "width: 100000000000... (5001 digits) is too large"),
        ("captions", None, "[0].emotion", "expected a non-negative integer, got 100000000000... (5001 digits)"),
        ("captions", "DUR", "[0].duration", "duration: 100000000000... (5001 digits) is too large"),
        ("msrvtt_json", '{"sentences": [{"video_id": %s, "caption": "x"}]}', "sentences[0].video_id", "string"),
    ],
    ids=["vce_emotion", "v2v_id", "metadata_width", "captions_emotion", "captions_duration", "msrvtt_video_id"],
)
def test_huge_json_integer_is_reported_at_its_key(tmp_path, kind, content, where, text):
    path = tmp_path / FILE_NAME[kind]
    if kind == "vce" and content is None:
        text_ = json.dumps({"00001": _vce_entry(Anger=0.5)}).replace("0.5", HUGE)
    elif kind == "vce_metadata":
        meta = {"file": "videos/00001.mp4", "frame_rate": "30/1", "number_of_frames": "3", "duration": "1"}
        text_ = json.dumps({"00001": {**meta, "width": 12345}}).replace("12345", HUGE)
    elif kind == "captions":
        rec = {"video": "a.mp4", "video_id": "a", "caption": "c", "duration": 1.5, "emotion": 1}
        rec |= {k: 0.0 for k in ("positive", "negative", "neutral")}
        rec |= {k: 0.0 for k in ("joy", "trust", "surprise", "anticipation", "fear", "sadness", "disgust", "anger")}
        text_ = json.dumps([rec]).replace('"duration": 1.5' if content == "DUR" else '"emotion": 1', "@@")
        text_ = text_.replace("@@", ('"duration": ' if content == "DUR" else '"emotion": ') + HUGE)
    else:
        text_ = content % HUGE
    path.write_text(text_)
    problems = _both_modes(kind, path, text)
    assert any(where in str(p) for p in problems), problems


def test_huge_numbers_in_csv_and_pickle_and_rates(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text(f"video_path,intensity_score\nx.mp4,{HUGE}\n")
    _both_modes("intensity", csv, "is not a finite number")
    # a pickle can hold an int past float range without any text conversion
    pkl = tmp_path / "annotation_training.pkl"
    pkl.write_bytes(pickle.dumps({t: {"abc.001.mp4": 10**400 if t == "openness" else 0.5} for t in FIV2_TRAITS}))
    _both_modes("fiv2", pkl, "openness: an integer of about 400 digits is too large")
    # Fraction("1e99999") builds a 100000-digit int (and 1e999999999 would never finish): not a frame rate
    meta = tmp_path / "metadata.json"
    entry = {"file": "v.mp4", "number_of_frames": "3", "duration": "1"}
    for rate in ("1e99999", HUGE + "/1"):
        meta.write_text(json.dumps({"00001": {**entry, "frame_rate": rate}}))
        _both_modes("vce_metadata", meta, "is not a rate like '30/1'")


def test_size_limit_and_memory_error(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"video": "a"}] * 100))
    monkeypatch.setattr(_common, "MAX_LABEL_BYTES", 1000)
    _both_modes("captions", path, "over the 1000 bytes limit for label files")
    monkeypatch.setattr(_common, "MAX_LABEL_BYTES", 1 << 30)

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(_common.json, "loads", oom)
    _both_modes("captions", path, "too large to load into memory")


def test_deep_and_huge_json_through_the_cli(ds, capsys):
    labels = ds / "vce" / "train_labels.json"
    labels.write_text(DEEP)
    code, out, _ = _cli(capsys, "vce", ds / "vce", "--no-probe")
    assert code == 1 and f"malformed: {labels}: JSON nested too deeply" in out and out.rstrip().endswith("FAILED")
    v2v = ds / "v2v" / "train_labels.json"
    v2v.write_text(f'{{"comparisons": [["00001", {HUGE}]]}}')
    code, out, _ = _cli(capsys, "v2v", ds / "v2v", "--no-probe")
    assert code == 1 and f"{v2v}:comparisons[0][1]: video ids must be non-empty strings" in out
    (ds / "captions.json").write_text(DEEP)
    code, out, _ = _cli(capsys, "captions", ds / "captions.json")
    assert code == 1 and "nested too deeply" in out


def test_deep_json_through_train(ds, tmp_path, capsys):
    (ds / "vce" / "train_labels.json").write_text(DEEP)
    code = main(
        ["train", "vce", "--data", str(ds / "vce"), "-o", str(tmp_path / "x"), "--model", "test_resnet18_3dstem"]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "train_labels.json: JSON nested too deeply" in err and "unexpected" not in err


# ---- 2. what data check used to call OK ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CSV_HEADERS))
def test_header_only_csv_is_empty(tmp_path, kind, caplog):
    path = tmp_path / FILE_NAME[kind]
    path.write_text(CSV_HEADERS[kind] + "\n\n")
    with caplog.at_level(logging.WARNING, "emovid.data"):
        assert READERS[kind](path) == []  # raise mode: a warning (logged), the caller decides what no rows means
    assert "has a header but no data rows" in caplog.text
    problems = []
    READERS[kind](path, problems=problems)
    assert [(p.kind, p.severity) for p in problems] == [("empty", "warning")]


@pytest.mark.parametrize("fmt,name", [("intensity", "a.csv"), ("mosei", "a.csv"), ("va", "a.csv"), ("msrvtt", "a.csv")])
def test_header_only_csv_fails_data_check(tmp_path, capsys, fmt, name):
    kind = {"msrvtt": "msrvtt_csv"}.get(fmt, fmt)
    path = tmp_path / name
    path.write_text(CSV_HEADERS[kind] + "\n")
    code, out, _ = _cli(capsys, fmt, path)
    assert code == 1
    assert f"empty: {path}: the file has a header but no data rows" in out and "nothing to train on" in out
    assert out.rstrip().endswith("problems: 1 empty -> FAILED")


def test_empty_json_label_files(tmp_path, capsys):
    cases = [
        ("vce", "train_labels.json", {}, "lists no videos"),
        ("v2v", "train_labels.json", {"comparisons": []}, "'comparisons' is empty"),
        ("captions", "c.json", [], "holds no caption records"),
        ("msrvtt_json", "m.json", {"sentences": []}, "'sentences' is empty"),
    ]
    for kind, name, content, text in cases:
        path = tmp_path / kind / name
        path.parent.mkdir()
        path.write_text(json.dumps(content))
        assert READERS[kind](path) == []
        problems = []
        READERS[kind](path, problems=problems)
        assert [(p.kind, p.severity) for p in problems] == [("empty", "warning")] and text in problems[0].message
        fmt = {"msrvtt_json": "msrvtt"}.get(kind, kind)
        code, out, _ = _cli(capsys, fmt, path, "--no-probe")
        assert code == 1 and text in out and "-> FAILED" in out
    pkl = tmp_path / "annotation_training.pkl"
    pkl.write_bytes(pickle.dumps({t: {} for t in FIV2_TRAITS}, protocol=2))
    code, out, _ = _cli(capsys, "fiv2", pkl)
    assert code == 1 and "the pickle holds no clips" in out


def test_empty_extra_split_is_only_a_warning(ds, capsys):
    (ds / "v2v" / "test_labels.json").write_text('{"comparisons": []}')
    code, out, _ = _cli(capsys, "v2v", ds / "v2v", "--no-probe")
    assert code == 0, out
    assert f"warning: empty: {ds / 'v2v' / 'test_labels.json'}:comparisons: 'comparisons' is empty" in out
    assert "; warnings: " in out and out.rstrip().endswith("-> OK")
    (ds / "v2v" / "train_labels.json").write_text('{"comparisons": []}')
    code, out, _ = _cli(capsys, "v2v", ds / "v2v", "--no-probe")
    assert code == 1 and f"empty: {ds / 'v2v' / 'train_labels.json'}:comparisons" in out


def test_v2v_contradictions_and_duplicates_are_warnings(tmp_path, capsys, caplog):
    path = tmp_path / "train_labels.json"
    path.write_text(json.dumps({"comparisons": [["a", "b"], ["c", "d"], ["b", "a"], ["c", "d"]]}))
    with caplog.at_level(logging.WARNING, "emovid.data"):
        recs = read_v2v(path, metadata=False)
    assert [r.index for r in recs] == [0, 1, 2, 3]  # warnings keep every record
    assert "comparisons[2]: prefers 'a' to 'b', but comparisons[0] prefers 'b'" in caplog.text
    problems = []
    read_v2v(path, metadata=False, problems=problems)
    assert [(p.kind, p.where, p.severity) for p in problems] == [
        ("contradiction", "comparisons[2]", "warning"),
        ("duplicate_comparison", "comparisons[3]", "warning"),
    ]
    assert problems[1].message == "repeats comparisons[1] exactly"
    # listwise: a ranking reverses a pair another one stated
    lw = tmp_path / "listwise_labels.json"
    lw.write_text(json.dumps({"comparisons": [["a", "b", "c"], ["c", "d", "a"]]}))
    problems = []
    read_v2v(lw, split="listwise", metadata=False, problems=problems)
    assert [(p.kind, p.where) for p in problems] == [("contradiction", "comparisons[1]")]
    # data check: listed as warnings, exit 0
    rep = check_labels("v2v", path, probe_videos=False)  # no videos here: only missing_video errors
    assert len(rep.warnings) == 2 and {p.kind for p in rep.errors} == {"missing_video"}


def test_v2v_warnings_through_the_cli(ds, capsys):
    train = ds / "v2v" / "train_labels.json"
    comps = json.loads(train.read_text())["comparisons"]
    comps += [comps[0], comps[1][::-1]]
    train.write_text(json.dumps({"comparisons": comps}))
    code, out, _ = _cli(capsys, "v2v", ds / "v2v", "--no-probe")
    n = len(comps)
    assert code == 0, out
    assert f"warning: duplicate_comparison: {train}:comparisons[{n - 2}]: repeats comparisons[0] exactly" in out
    assert f"warning: contradiction: {train}:comparisons[{n - 1}]: prefers" in out
    summary = out.rstrip().splitlines()[-1]
    assert "problems: none; warnings: " in summary and "1 contradiction, 1 duplicate_comparison" in summary
    assert summary.endswith("-> OK")
    code = main(["data", "check", "v2v", str(ds / "v2v"), "--no-probe", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 0 and rep["ok"] and rep["errors"] == 0 and rep["warnings"] >= 2
    assert {p["severity"] for p in rep["problems"] if p["kind"] == "contradiction"} == {"warning"}


@pytest.mark.parametrize("fmt", ["vce", "v2v"])
@pytest.mark.parametrize("missing", ["train_labels.json", "metadata.json"])
def test_dataset_folder_missing_required_file(ds, capsys, fmt, missing):
    (ds / fmt / missing).unlink()
    code, out, _ = _cli(capsys, fmt, ds / fmt, "--no-probe")
    assert code == 1
    assert f"missing_file: {ds / fmt}: no {missing} in the folder; a {fmt.upper()} dataset needs it" in out
    assert "1 missing_file" in out.rstrip().splitlines()[-1]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "videos/../../outside.mp4", "..\\..\\x.mp4"])
def test_files_outside_the_dataset_are_refused_and_never_opened(ds, capsys, monkeypatch, bad):
    import emovid.video

    opened = []
    real_probe = emovid.video.probe
    monkeypatch.setattr(emovid.video, "probe", lambda p, *a, **k: opened.append(p) or real_probe(p, *a, **k))
    meta_path = ds / "vce" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    vid = next(iter(meta))
    meta[vid]["file"] = bad
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LabelFormatError) as ei:
        read_vce_metadata(meta_path)
    assert f'{meta_path}:"{vid}".file: file: ' in _one_line(ei.value) and "dataset folder" in str(ei.value)
    code, out, _ = _cli(capsys, "vce", ds / "vce")
    assert code == 1 and f'unsafe_path: {meta_path}:"{vid}".file: file: ' in out
    meta_path = ds / "v2v" / "metadata.json"  # V2V reads its own copy
    meta_path.write_text(json.dumps(meta))
    code, out, _ = _cli(capsys, "v2v", ds / "v2v")
    assert code == 1 and f'unsafe_path: {meta_path}:"{vid}".file' in out
    assert all(os.path.realpath(p).startswith(os.path.realpath(ds)) for p in opened), opened
    assert len(opened) >= 8  # the check did probe the dataset's own videos


def test_label_file_entries_and_ids_outside_the_dataset(tmp_path):
    labels = tmp_path / "train_labels.json"
    labels.write_text(json.dumps({"00001": {**_vce_entry(), "file": "../secret.mp4"}}))
    _both_modes("vce", labels, "file: '../secret.mp4' leaves the dataset folder")
    labels.write_text(json.dumps({"../../x": {"emotions": _vce_entry()["emotions"]}}))  # default file from the id
    _both_modes("vce", labels, "leaves the dataset folder")
    labels.write_text(json.dumps({"comparisons": [["a", "../../../etc/passwd"]]}))
    _both_modes("v2v", labels, "video id: 'videos/../../../etc/passwd.mp4' leaves the dataset folder")


def test_nul_bytes(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_bytes((CSV_HEADERS["mosei"] + "\nv1,0,0,0,0,0,0\nv\x002,0,0,1,0,0,0\n").encode())
    problems = _both_modes("mosei", path, "contains a NUL byte")
    assert problems[0].where == 3
    code, out, _ = _cli(capsys, "mosei", path, "--no-probe")
    assert code == 1 and f"malformed: {path}:3: the row contains a NUL byte" in out
    cap = tmp_path / "m.json"
    cap.write_text(json.dumps({"sentences": [{"video_id": "v\x00", "caption": "x"}]}))
    _both_modes("msrvtt_json", cap, "contains a NUL character")


def test_va_time_going_backwards_is_a_warning(tmp_path, capsys, caplog):
    path = tmp_path / "va.csv"
    path.write_text("video,time,valence,arousal\nv,0,0,0\nw,0,0,0\nv,2,0,0\nv,1,0,0\nv,0.5,0,0\nw,1,0,0\n")
    with caplog.at_level(logging.WARNING, "emovid.data"):
        (v, w) = read_va_csv(path)
    assert list(v.times) == [0, 0.5, 1, 2] and list(w.times) == [0, 1]  # kept and sorted
    assert "va.csv:5: time 1 of video 'v' is before 2 (line 4)" in caplog.text
    problems = []
    read_va_csv(path, problems=problems)
    assert [(p.kind, p.where, p.severity) for p in problems] == [("unordered", 5, "warning")]  # once per video
    code, out, _ = _cli(capsys, "va", path, "--no-probe")
    assert f"warning: unordered: {path}:5: time 1 of video 'v'" in out and "warnings: 1 unordered" in out


# ---- 3. FIV2 pickles: numpy scalars in, code out -----------------------------------------------------------------


def _fiv2_data(value_type=np.float64):
    return {t: {"abc.001.mp4": value_type(0.25), "abc.002.mp4": value_type(0.75)} for t in (*FIV2_TRAITS, "interview")}


@pytest.mark.parametrize("module", [b"numpy._core.multiarray", b"numpy.core.multiarray"])
@pytest.mark.parametrize("value_type", [np.float64, np.float32])
def test_fiv2_protocol2_numpy_scalars_load(tmp_path, capsys, module, value_type):
    raw = pickle.dumps(_fiv2_data(value_type), protocol=2)
    assert b"_codecs\nencode" in raw  # Python 3 writes the scalar's bytes through _codecs.encode
    raw = raw.replace(b"numpy._core.multiarray", module)  # numpy 1's name (GLOBAL names are newline-terminated)
    pkl = tmp_path / "annotation_training.pkl"
    pkl.write_bytes(raw)
    recs = read_fiv2(pkl)
    assert [r.traits for r in recs] == [(0.25,) * 5, (0.75,) * 5] and recs[0].interview == 0.25
    (tmp_path / "abc.001.mp4").write_bytes(b"")
    (tmp_path / "abc.002.mp4").write_bytes(b"")
    code, out, _ = _cli(capsys, "fiv2", pkl, "--no-probe")
    assert code == 0 and "2 records" in out and out.rstrip().endswith("-> OK")


def _global_call(module: str, name: str, *args) -> bytes:
    """A protocol-0 pickle calling ``module.name(*args)`` (args: str or int)."""
    parts = [b"c" + module.encode() + b"\n" + name.encode() + b"\n("]
    for a in args:
        parts.append(b"V" + a.encode("raw_unicode_escape") + b"\n" if isinstance(a, str) else b"I%d\n" % a)
    return b"".join(parts) + b"tR."


def _wrap(call: bytes) -> bytes:
    """``{"openness": <call>}`` so the payload sits where a value would."""
    return b"(dp0\nVopenness\np1\n" + call[:-1] + b"s."


@pytest.mark.parametrize(
    "payload,text",
    [
        (_global_call("os", "system", "touch {marker}"), "refusing to load os.system"),
        (_global_call("posix", "system", "touch {marker}"), "refusing to load posix.system"),
        (_global_call("builtins", "eval", "open({marker!r}, 'w')"), "refusing to load builtins.eval"),
        (_global_call("builtins", "exec", "open({marker!r}, 'w')"), "refusing to load builtins.exec"),
        (_global_call("subprocess", "Popen", "touch {marker}"), "refusing to load subprocess.Popen"),
        (_global_call("builtins", "getattr", "x", "y"), "refusing to load builtins.getattr"),
        (_global_call("_codecs", "encode", "eJwrSS0u0S0pSk0BABlfBDY=", "base64"), "refusing _codecs.encode"),
        (_global_call("_codecs", "encode", "x", "rot13"), "refusing _codecs.encode with encoding 'rot13'"),
        (_global_call("_codecs", "encode", "x", "latin1", "ignore"), "refusing _codecs.encode other than"),
        (_global_call("_codecs", "decode", "x", "latin1"), "refusing to load _codecs.decode"),
        (_global_call("numpy", "dtype", "O"), "not a numeric type"),
        (_global_call("numpy", "load", "{marker}"), "refusing to load numpy.load"),
        (_global_call("numpy.core.multiarray", "_reconstruct", "x"), "refusing to load numpy.core.multiarray"),
    ],
    ids=lambda v: v.decode().split("\n")[0][1:] + "." + v.decode().split("\n")[1] if isinstance(v, bytes) else "",
)
def test_fiv2_malicious_pickles_are_refused(tmp_path, capsys, payload, text):
    marker = tmp_path / "pwned"
    raw = _wrap(payload.replace(b"{marker!r}", repr(str(marker)).encode()).replace(b"{marker}", str(marker).encode()))
    pkl = tmp_path / "annotation_training.pkl"
    pkl.write_bytes(raw)
    _both_modes("fiv2", pkl, text)
    code, out, _ = _cli(capsys, "fiv2", pkl)
    assert code == 1 and "not a readable annotation pickle" in out and text in out
    assert not marker.exists()


def test_fiv2_numpy_scalar_of_object_dtype_is_refused(tmp_path):
    # scalar(dtype("O"), x) would hand back any object; even a numeric dtype must come from numpy.dtype
    pkl = tmp_path / "annotation_training.pkl"
    pkl.write_bytes(_wrap(_global_call("numpy._core.multiarray", "scalar", "x", "y")))
    _both_modes("fiv2", pkl, "refusing a numpy scalar that is not a plain number")


# ---- 4. captions format sniffing ---------------------------------------------------------------------------------


def test_captions_sniffing_skips_a_bom(clean, tmp_path):
    from emovid.config import TrainConfig
    from emovid.tasks import get_task

    bom = tmp_path / "captions.json"
    bom.write_bytes(b"\xef\xbb\xbf  \n" + (clean / "captions.json").read_bytes())
    assert captions_format(bom) == "emotion" and captions_format(clean / "msrvtt_captions.json") == "msrvtt"
    assert captions_format(clean / "msrvtt_captions.csv") == "msrvtt"
    task = get_task("retrieval")(TrainConfig(task="retrieval", data=str(bom), video_root=str(clean / "videos")))
    task.load()
    recs = task.train_records + task.val_records
    assert recs and all(r.plutchik for r in recs)  # read as emotion-caption emotion captions, not as MSR-VTT
    assert check_labels("captions", bom, video_root=clean / "videos", probe_videos=False).ok


# ---- 5. special files --------------------------------------------------------------------------------------------


def _no_hang(fn, fifo=None, timeout=10.0):
    """Run ``fn`` in a thread; fail (and unblock it) if it does not return in time."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        if fifo is not None:  # open the writing end so the blocked reader sees EOF and the thread ends
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            t.join(5)
        pytest.fail(f"reader blocked on {fifo}")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", list(READERS))
def test_fifo_label_file_is_refused_without_hanging(tmp_path, kind):
    fifo = tmp_path / FILE_NAME[kind]
    os.mkfifo(fifo)
    with pytest.raises(SpecialFileError) as ei:
        _no_hang(lambda: READERS[kind](fifo), fifo)
    assert f"{fifo}: is a FIFO, not a regular" in _one_line(ei.value)
    problems = []
    assert not _no_hang(lambda: READERS[kind](fifo, problems=problems), fifo)
    assert [(p.kind, p.path) for p in problems] == [("malformed", str(fifo))] and "FIFO" in problems[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_through_data_check_and_sniffing(ds, tmp_path, capsys):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    code, out, _ = _no_hang(lambda: _cli(capsys, "intensity", fifo), fifo)
    assert code == 1 and f"malformed: {fifo}: is a FIFO, not a regular label file" in out
    meta = ds / "vce" / "metadata.json"
    meta.unlink()
    os.mkfifo(meta)
    code, out, _ = _no_hang(lambda: _cli(capsys, "vce", ds / "vce", "--no-probe"), meta)
    assert code == 1 and f"{meta}: is a FIFO" in out
    cap = tmp_path / "captions.json"
    os.mkfifo(cap)
    with pytest.raises(SpecialFileError):
        _no_hang(lambda: captions_format(cap), cap)


def test_folder_and_device_label_files(tmp_path, capsys):
    folder = tmp_path / "a.csv"
    folder.mkdir()
    with pytest.raises(SpecialFileError, match="is a folder, not a regular label file"):
        read_intensity_csv(folder)
    code, out, _ = _cli(capsys, "intensity", folder)
    assert code == 1 and "is a folder" in out
    if os.path.exists("/dev/null"):
        with pytest.raises(SpecialFileError, match="is a character device"):
            read_emotion_captions("/dev/null")
        with pytest.raises(SpecialFileError, match="is a character device"):
            read_fiv2("/dev/null")
    with pytest.raises(InputNotFoundError):
        read_fiv2(tmp_path / "absent.pkl")
    assert issubclass(SpecialFileError, EmovidError)
