"""Start-up cost of ``emovid search`` (zero-shot index): the query encoder before and after the NumPy text path.

Each measurement is a fresh Python process (as a shell user runs ``emovid search``), timed from the command line
to the printed results, over the same small zero-shot index:

* ``emovid search`` — the command as it is now: query encoder :class:`~emovid.retrieval.text.QueryEncoder`
  (``tokenizers`` + memory-mapped ``model.safetensors`` + NumPy; neither torch nor transformers imported);
* ``transformers encoder`` — the same search with the previous query encoder, ``MiniLMEncoder``
  (``AutoTokenizer`` + ``AutoModel.from_pretrained``, importing torch and transformers), done by the same library
  calls the command used to make;
* ``search only`` — the FAISS search and query encoding alone, in-process, after loading (what the user waits for
  once the encoder is up).

The two process kinds alternate, ``--repeat`` times each; medians reported. On a shared, loaded 2-core machine
absolute times vary; the ratio is measured side by side.

Run: ``python bench/retrieval_search_start.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, write_results  # noqa: E402

QUERY = "an angry person"

OLD = """
import sys
from emovid.retrieval.index import VideoIndex
from emovid.retrieval.text import EMOTION_PROMPTS, zero_shot_vector, get_minilm
from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
import numpy as np
idx = VideoIndex.load(sys.argv[1])
enc = get_minilm("cpu")
prompts = enc.encode([EMOTION_PROMPTS[e] for e in PLUTCHIK_EMOTIONS])
emo = np.zeros(8, np.float32); emo[PLUTCHIK_EMOTIONS.index("anger")] = 1
q = zero_shot_vector(enc.encode([sys.argv[2]])[0], emo, prompts, 1.0)
print(idx.search(q[None], 3)[1][0].tolist())
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from emovid.data.synth import generate
    from emovid.retrieval.embed import ZeroShotEmbedder, build_index, collect_videos
    from emovid.retrieval.search import Searcher

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "s", num_videos=24, seed=3, size=64, fps=8, seconds=1.0, workers=1)
        items, roots = collect_videos(manifest=root / "s" / "captions.json", video_root=root / "s" / "videos")
        build_index(root / "idx", items, roots, ZeroShotEmbedder(video_emotions=False), progress=False)
        emovid = str(Path(sys.executable).with_name("emovid"))
        new_cmd = [emovid, "search", QUERY, "-i", str(root / "idx"), "-k", "3", "--json"]
        old_cmd = [sys.executable, "-c", OLD, str(root / "idx"), QUERY]
        timed(new_cmd)  # warm the page cache for both
        timed(old_cmd)
        new, old = [], []
        for _ in range(args.repeat):
            new.append(timed(new_cmd)[0])
            old.append(timed(old_cmd)[0])
        s = Searcher(root / "idx")
        s.search(QUERY, k=3)
        t = []
        for _ in range(20):
            t0 = time.perf_counter()
            s.search(QUERY, k=3)
            t.append(time.perf_counter() - t0)
        search_ms = statistics.median(t) * 1000
    rows = [
        {"run": "emovid search (QueryEncoder: tokenizers + mmap safetensors + NumPy)",
         "median_s": round(statistics.median(new), 2), "min_s": round(min(new), 2)},
        {"run": "same search, transformers MiniLMEncoder (before)",
         "median_s": round(statistics.median(old), 2), "min_s": round(min(old), 2)},
    ]  # fmt: skip
    ratio = statistics.median(old) / statistics.median(new)
    md = (
        "### `emovid search` start-up (zero-shot index, fresh process per call)\n\n"
        f"{args.repeat} alternating runs each, 24-video index, query {QUERY!r}, top 3. In-process search once the "
        f"encoder is loaded: {search_ms:.1f} ms.\n\n"
        + md_table(rows, ["run", "median_s", "min_s"])
        + f"\n\nThe new start is {ratio:.1f}x faster (median)."
    )
    write_results("retrieval_search_start", {"rows": rows, "search_ms": search_ms, "ratio": ratio}, md)
    print(md)


if __name__ == "__main__":
    main()
