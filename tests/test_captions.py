"""``emovid captions label``: NRC affect counts of captions in the CLIP-ViP recipe's record form."""

from __future__ import annotations

import json

import pytest

from emovid.data.readers.captions import CAPTION_FIELDS

pytest.importorskip("nrclex")

#: The CLIP-ViP recipe's sample record, as printed in the original recipe notebook.
SEED_RECORD = {
    "video": "video7112.mp4",
    "video_id": "video7112",
    "caption": "while other friends too try and hitting the basket another is eager to achieve his fourth successful "
    "basket in basketball",
    "duration": 18.35,
    "emotion": 1,
    "positive": 4.0,
    "negative": 0.0,
    "neutral": 0.0,
    "joy": 4.0,
    "trust": 3.0,
    "surprise": 1.0,
    "anticipation": 3.0,
    "fear": 0.0,
    "sadness": 0.0,
    "disgust": 0.0,
    "anger": 0.0,
}

ZERO = dict.fromkeys(("positive", "negative", "joy", "trust", "surprise", "anticipation", "fear", "sadness",
                      "disgust", "anger"), 0.0)  # fmt: skip


@pytest.fixture(scope="module")
def lex():
    from emovid.retrieval.captions import load_lexicon

    return load_lexicon()


def test_seed_caption_gets_exactly_the_seed_counts(lex):
    from emovid.retrieval.captions import label_record

    rec = label_record(SEED_RECORD["caption"], "video7112", "video7112.mp4", 18.35, lex)
    assert rec == SEED_RECORD and list(rec) == list(SEED_RECORD) == list(CAPTION_FIELDS)
    # which words carry the counts: matched as written ("friends" is not lemmatised to the lexicon's "friend")
    assert lex.table["eager"] == {"anticipation", "joy", "positive", "surprise", "trust"}
    assert lex.table["achieve"] == {"joy", "positive", "trust"}
    assert lex.table["successful"] == {"anticipation", "joy", "positive", "trust"}
    assert lex.table["basketball"] == {"anticipation", "joy", "positive"}
    assert "friends" not in lex.table and "friend" in lex.table


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # baby: joy, positive | crying: negative, sadness | funeral: sadness
        ("A baby crying at a funeral", {"positive": 1, "negative": 1, "joy": 1, "sadness": 2}),
        # child (x2, possessive 's dropped): anticipation, joy, positive | smile: joy, positive, surprise, trust |
        # laugh: joy, positive, surprise
        (
            "the child's smile, the child's LAUGH!",
            {"positive": 4, "joy": 4, "anticipation": 2, "surprise": 2, "trust": 1},
        ),  # fmt: skip
        # "don't" stays one word (the lexicon's "don" is positive/trust); scream: anger, disgust, fear, negative,
        # surprise; "dogs" is not in the lexicon
        ("I don't scream at dogs", {"negative": 1, "anger": 1, "disgust": 1, "fear": 1, "surprise": 1}),
        ("a man walks a dog down the road", {}),
    ],
)
def test_hand_worked_counts(lex, caption, expected):
    from emovid.retrieval.captions import affect_counts, label_record

    want = {**ZERO, **{k: float(v) for k, v in expected.items()}}
    assert affect_counts(caption, lex) == want
    rec = label_record(caption, "v", None, None, lex)
    assert rec["video"] == "v.mp4" and rec["duration"] is None
    plutchik = [want[e] for e in CAPTION_FIELDS[8:]]
    assert rec["emotion"] == int(any(plutchik))
    assert rec["neutral"] == (1.0 if want["positive"] == want["negative"] == 0 else 0.0)


def test_counts_equal_nrclex_on_our_words(lex):
    from nrclex import NRCLex

    from emovid.retrieval.captions import affect_counts, words

    for text in (SEED_RECORD["caption"], "A baby crying at a funeral, then a happy wedding kiss", "angry angry fight"):
        ref = NRCLex()
        ref.load_token_list(words(text))
        got = {k: v for k, v in affect_counts(text, lex).items() if v}
        assert got == {k: float(v) for k, v in ref.raw_emotion_scores.items()}


def test_seed_record_round_trips_through_reader_and_labeller(tmp_path, capsys):
    from emovid.cli import main
    from emovid.data.readers.captions import read_emotion_captions

    src = tmp_path / "seed.json"
    src.write_text(json.dumps([SEED_RECORD]))
    rec = read_emotion_captions(src)[0]
    assert rec.caption == SEED_RECORD["caption"] and rec.plutchik == (4.0, 3.0, 1.0, 3.0, 0.0, 0.0, 0.0, 0.0)
    out = tmp_path / "out.json"
    assert main(["captions", "label", str(src), "-o", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got == [SEED_RECORD] and list(got[0]) == list(SEED_RECORD)
    again = read_emotion_captions(out)[0]
    assert again == rec
    assert "1 of 1 captions" in capsys.readouterr().err


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth_captions")
    generate(out, num_videos=6, seed=4, size=64, fps=8, seconds=1.0, workers=1)
    return out


def test_msrvtt_inputs_filters_and_durations(synth, tmp_path, capsys, lex):
    from emovid.cli import main
    from emovid.data.readers.captions import read_emotion_captions, read_msrvtt_captions
    from emovid.retrieval.captions import affect_counts

    sentences = read_msrvtt_captions(synth / "msrvtt_captions.csv")
    out = tmp_path / "all.json"
    assert main(["captions", "label", str(synth / "msrvtt_captions.csv"), "-o", str(out),
                 "--video-root", str(synth / "videos")]) == 0  # fmt: skip
    recs = json.loads(out.read_text())
    assert len(recs) == len(sentences) and all(list(r) == list(CAPTION_FIELDS) for r in recs)
    assert all(r["duration"] == 1.0 for r in recs)  # 8 frames at 8 fps, read from the videos
    for r, s in zip(recs, sentences, strict=True):
        assert r["caption"] == s.caption and r["joy"] == affect_counts(s.caption, lex)["joy"]
    assert len(read_emotion_captions(out, synth / "videos")) == len(recs)  # trainable as is
    # the same from the MSR-VTT JSON layout
    out_json = tmp_path / "json.json"
    assert main(["captions", "label", str(synth / "msrvtt_captions.json"), "-o", str(out_json)]) == 0
    assert [r["caption"] for r in json.loads(out_json.read_text())] == [r["caption"] for r in recs]
    assert "duration null" in capsys.readouterr().err  # no --video-root: said, not silently zero

    per_caption = tmp_path / "c.json"
    assert main(["captions", "label", str(out), "-o", str(per_caption), "--require-emotion"]) == 0
    kept = json.loads(per_caption.read_text())
    assert kept == [r for r in recs if r["emotion"]]
    per_video = tmp_path / "v.json"
    assert main(["captions", "label", str(out), "-o", str(per_video), "--require-emotion", "--per", "video"]) == 0
    with_emo = {r["video_id"] for r in recs if r["emotion"]}
    assert json.loads(per_video.read_text()) == [r for r in recs if r["video_id"] in with_emo]
    # a video with one emotional and one plain caption: --per video keeps both, --per caption only the first
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([{"video_id": "m", "caption": "a happy man"}, {"video_id": "m", "caption": "a man"},
                                 {"video_id": "n", "caption": "a dog"}]))  # fmt: skip
    for per, want in (("caption", ["a happy man"]), ("video", ["a happy man", "a man"])):
        assert main(["captions", "label", str(mixed), "-o", str(per_video), "--require-emotion", "--per", per]) == 0
        assert [r["caption"] for r in json.loads(per_video.read_text())] == want


def test_lexicon_files(tmp_path):
    from emovid.errors import LabelFormatError
    from emovid.retrieval.captions import affect_counts, load_lexicon

    txt = tmp_path / "NRC-Emotion-Lexicon-Wordlevel.txt"
    txt.write_text("glad\tjoy\t1\nglad\tpositive\t1\nglad\tanger\t0\nmoan\tsadness\t1\n")
    lex = load_lexicon(txt)
    assert lex.table == {"glad": {"joy", "positive"}, "moan": {"sadness"}}
    assert affect_counts("Glad glad moan", lex) == {**ZERO, "joy": 2.0, "positive": 2.0, "sadness": 1.0}
    bad = tmp_path / "bad.txt"
    bad.write_text("glad\tjoy\t1\nglad joy 1\n")
    with pytest.raises(LabelFormatError, match=r"bad.txt:2: expected WORD<TAB>AFFECT"):
        load_lexicon(bad)
    js = tmp_path / "lex.json"
    js.write_text('{"glad": ["joy", "bliss"]}')
    with pytest.raises(LabelFormatError, match="'glad': expected a list of positive"):
        load_lexicon(js)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[{"video_id": "a", "caption": "x"},\n {"video_id": "b"}]',
            r"in.json:2: \[1\]: caption: expected a non-empty",
        ),
        ('[{"video_id": "a", "caption": "x"},\n\n  {"video_id": 7, "caption": "y"}]', r"in.json:3: \[1\]: video_id"),
        ('[{"video_id": "a", "caption": "x", "duration": -1}]', r"in.json:1: \[0\]: duration: expected a non-neg"),
        ('[{"video_id": "a", "caption": "x"},\n {"video_id": "a", "caption": "x"}]', r"in.json:2: .*already at \[0\]"),
        ('[{"video_id": "a", "caption": "x"},\n "oops"]', r"in.json:2: \[1\]: expected an object"),
        ('[{"video_id": "a",\n "caption": "x"', r"in.json:2: invalid JSON"),
        ("[]", r"in.json: the list holds no captions"),
    ],
)
def test_malformed_caption_files_one_line_error(tmp_path, capsys, text, message):
    import re

    from emovid.cli import main

    src = tmp_path / "in.json"
    src.write_text(text)
    assert main(["captions", "label", str(src), "-o", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "o.json").exists()


def test_csv_error_names_line_and_bad_options(tmp_path, capsys):
    from emovid.cli import main

    csv = tmp_path / "c.csv"
    csv.write_text("video_id,sentence\nv1,a happy man\nv2,\n")
    assert main(["captions", "label", str(csv), "-o", str(tmp_path / "o.json")]) == 1
    assert "c.csv:3: sentence: empty value" in capsys.readouterr().err
    csv.write_text("video_id,sentence\nv1,a happy man\n")
    assert main(["captions", "label", str(csv), "-o", str(tmp_path / "o.json"), "--per", "frame"]) == 1
    assert "--per must be one of caption, video" in capsys.readouterr().err
    assert main(["captions", "label", str(csv), "-o", str(tmp_path / "o.json"), "--video-root", str(csv)]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_video_root_reads_only_regular_files_inside_it(synth, tmp_path, capsys):
    import os
    import shutil

    from emovid.cli import main

    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(synth / "videos" / "00000.mp4", root / "a.mp4")
    shutil.copy(synth / "videos" / "00000.mp4", tmp_path / "outside.mp4")
    os.mkfifo(root / "pipe.mp4")  # would block a reader that opened it
    src = tmp_path / "c.json"
    recs = [{"video_id": v, "video": f, "caption": "a happy man"} for v, f in
            (("a", "a.mp4"), ("o", "../outside.mp4"), ("p", "pipe.mp4"), ("m", "missing.mp4"))]  # fmt: skip
    src.write_text(json.dumps(recs))
    out = tmp_path / "o.json"
    assert main(["captions", "label", str(src), "-o", str(out), "--video-root", str(root)]) == 0
    assert [r["duration"] for r in json.loads(out.read_text())] == [1.0, None, None, None]
    err = capsys.readouterr().err
    assert "3 video(s) not readable" in err and "first: ../outside.mp4" in err
