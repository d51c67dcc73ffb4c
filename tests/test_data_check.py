"""``emovid data check``: every problem kind is reported with its file and line/key, and the exit code."""

from __future__ import annotations

import json

import pytest

from emovid.cli import main
from emovid.data.check import check_labels


@pytest.mark.parametrize(
    "fmt,path,root",
    [
        ("intensity", "intensity.csv", None),
        ("vce", "vce", None),
        ("v2v", "v2v", None),
        ("mosei", "mosei.csv", "videos"),
        ("fiv2", "fiv2", None),
        ("va", "va.csv", "videos"),
        ("sewa", "va.csv", "videos"),
        ("captions", "captions.json", "videos"),
        ("msrvtt", "msrvtt_captions.csv", "videos"),
        ("msrvtt", "msrvtt_captions.json", "videos"),
    ],
)
def test_clean_dataset_passes(clean, capsys, fmt, path, root):
    args = ["data", "check", fmt, str(clean / path)] + (["--video-root", str(clean / root)] if root else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("-> OK") and "0 missing, 0 unreadable" in out


def test_intensity_problems_reported_with_lines(ds, capsys):
    csv = ds / "intensity.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",nan"  # line 4: NaN
    lines.append(lines[2])  # line 10: duplicate of line 3
    lines.append("videos/missing.mp4,0.5")  # line 11: missing video
    csv.write_text("\n".join(lines) + "\n")
    (ds / "videos" / "00004.mp4").unlink()  # line 6 (hard links elsewhere keep their copies)
    (ds / "videos" / "00005.mp4").unlink()
    (ds / "videos" / "00005.mp4").write_bytes(b"\x00garbage" * 50)  # line 7: unreadable
    code = main(["data", "check", "intensity", str(csv), "--video-root", str(ds)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"malformed: {csv}:4: intensity_score: nan is not a finite number" in out
    assert f"duplicate_id: {csv}:10: video 'videos/00001.mp4' already listed at line 3" in out
    assert f"missing_video: {csv}:6: video {ds / 'videos' / '00004.mp4'} not found" in out
    assert f"missing_video: {csv}:11:" in out
    assert f"unreadable_video: {csv}:7: video {ds / 'videos' / '00005.mp4'} is unreadable" in out
    summary = out.strip().splitlines()[-1]
    assert summary == (
        "intensity: 1 label file(s), 8 records, 8 videos (5 ok, 2 missing, 1 unreadable); "
        "problems: 1 malformed, 1 duplicate_id, 2 missing_video, 1 unreadable_video -> FAILED"
    )
    # --no-probe skips opening videos; --json gives the same findings
    assert main(["data", "check", "intensity", str(csv), "--video-root", str(ds), "--no-probe", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["unreadable_video"] == 0 and rep["counts"]["missing_video"] == 2 and not rep["ok"]
    assert {"kind": "malformed", "path": str(csv), "where": 4} == {
        k: rep["problems"][0][k] for k in ("kind", "path", "where")
    }


def test_vce_range_overlap_and_unknown_id(ds, capsys):
    train = json.loads((ds / "vce" / "train_labels.json").read_text())
    test = json.loads((ds / "vce" / "test_labels.json").read_text())
    first = next(iter(train))
    train[first]["emotions"]["Joy"] = 1.5
    moved = next(iter(test))
    train[moved] = test[moved]  # in both splits
    train["99999"] = test[moved]  # not in metadata.json
    (ds / "vce" / "train_labels.json").write_text(json.dumps(train))
    code = main(["data", "check", "vce", str(ds / "vce"), "--no-probe"])
    out = capsys.readouterr().out
    assert code == 1
    tl = ds / "vce" / "train_labels.json"
    assert f'out_of_range: {tl}:"{first}".emotions.Joy: Joy: 1.5 is outside [0, 1]' in out
    assert f"unknown_id: {tl}:\"99999\": video '99999' is not in metadata.json" in out
    assert (
        f"duplicate_id: {ds / 'vce' / 'test_labels.json'}:\"{moved}\": video '{moved}' is also in train_labels.json"
        in out
    )


def test_v2v_splits_must_be_disjoint(ds, capsys):
    train = json.loads((ds / "v2v" / "train_labels.json").read_text())
    lw = json.loads((ds / "v2v" / "listwise_labels.json").read_text())
    lw["comparisons"].append(train["comparisons"][0])
    (ds / "v2v" / "listwise_labels.json").write_text(json.dumps(lw))
    assert main(["data", "check", "v2v", str(ds / "v2v"), "--no-probe"]) == 1
    out = capsys.readouterr().out
    n = len(lw["comparisons"]) - 1
    assert f"duplicate_id: {ds / 'v2v' / 'listwise_labels.json'}:comparisons[{n}]: video" in out
    assert "is also in the train split" in out


def test_bad_json_and_missing_fiv2_video(ds, capsys):
    (ds / "captions.json").write_text('[{"video": "a.mp4",\n "video_id": }]')
    assert main(["data", "check", "captions", str(ds / "captions.json")]) == 1
    out = capsys.readouterr().out
    assert f"malformed: {ds / 'captions.json'}:2: invalid JSON" in out
    for f in (ds / "fiv2").glob("training80_01/*.mp4"):
        f.unlink()
    report = check_labels("fiv2", ds / "fiv2", probe_videos=False)
    assert report.counts()["missing_video"] >= 1
    p = next(p for p in report.problems if p.kind == "missing_video")
    assert p.path.endswith("annotation_training.pkl") and p.where.endswith('.000.mp4"')


def test_usage_errors(clean, capsys, tmp_path):
    assert main(["data", "check", "nope", str(clean / "va.csv")]) == 1
    assert "unknown label format 'nope'" in capsys.readouterr().err
    assert main(["data", "check", "va", str(tmp_path / "absent.csv")]) == 1
    assert "absent.csv: no such file" in capsys.readouterr().err
    assert main(["data", "check", "va", str(clean / "va.csv"), "--video-root", str(tmp_path / "x")]) == 1
    assert "no such video folder" in capsys.readouterr().err
