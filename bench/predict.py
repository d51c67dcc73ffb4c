"""``emovid predict`` vs ``emovid extract`` with the same backbone: clips/s, side by side in one run.

Both go through the batch engine with the same clip windows (extract's default sliding windows), the same decoding
workers and the same batch of windows per forward pass; predict also runs the task head and writes the CSV/JSONL.
Also: Spearman of predicted intensity vs the labels of held-out synthetic videos (a briefly trained intensity run).

Run: ``python bench/predict.py [--videos 40] [--model x3d_xs] [--rounds 3]``. Rounds alternate the two commands.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import md_table, write_results  # noqa: E402


def _clips(out: Path) -> int:
    import json

    return sum(json.loads(line)["clips"] for line in (out / "manifest.jsonl").read_text().splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--train-videos", type=int, default=160)
    ap.add_argument("--model", default="test_resnet18_3dstem")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from emovid.config import TrainConfig
    from emovid.data.readers import read_intensity_csv
    from emovid.data.synth import generate
    from emovid.extract import extract_features
    from emovid.predict_run import predict_inputs
    from emovid.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "train", num_videos=args.train_videos, seed=0, size=64, fps=10, seconds=1.2, workers=2)
        generate(tmp / "test", num_videos=args.videos, seed=1, size=64, fps=10, seconds=1.2, workers=2)
        run = tmp / "run"
        cfg = TrainConfig(
            task="intensity", data=str(tmp / "train" / "intensity.csv"), output_dir=str(run), model=args.model,
            epochs=args.epochs, batch_size=16, lr=3e-3, score="norm", input_size=64,
            weight_decay=0.0, num_workers=args.workers, progress_bar=False,
        )  # fmt: skip
        train(cfg)
        videos = tmp / "test" / "videos"
        times: dict[str, list[float]] = {"predict": [], "extract": []}
        clips = 0
        for r in range(args.rounds):
            for name in ("extract", "predict") if r % 2 == 0 else ("predict", "extract"):
                out = tmp / f"{name}{r}"
                t0 = time.perf_counter()
                if name == "extract":
                    extract_features(videos, out, checkpoint=run, num_workers=args.workers, accelerator="cpu",
                                     devices=1)  # fmt: skip
                    clips = _clips(out)
                else:
                    predict_inputs(run, [videos], out, num_workers=args.workers)
                times[name].append(time.perf_counter() - t0)
        test_labels = read_intensity_csv(tmp / "test" / "intensity.csv", tmp / "test")
        labels = {r.video_path.name: r.intensity for r in test_labels}
        with open(tmp / f"predict{args.rounds - 1}" / "predictions.csv") as f:
            rows = list(csv.DictReader(f))
        pred = [float(r["intensity"]) for r in rows]
        true = [labels[Path(r["video"]).name] for r in rows]
        rho = float(spearmanr(pred, true).statistic)
    rows = []
    for name in ("extract", "predict"):
        med = statistics.median(times[name])
        rows.append({"command": f"emovid {name}", "median s": med, "best s": min(times[name]),
                     "clips/s (median)": clips / med})  # fmt: skip
    ratio = rows[1]["clips/s (median)"] / rows[0]["clips/s (median)"]
    md = (
        f"## `emovid predict` vs `emovid extract`, same backbone\n\n`python bench/predict.py --videos {args.videos} "
        f"--model {args.model} --rounds {args.rounds}` — an intensity run ({args.model}, {args.epochs} epochs on "
        f"{args.train_videos} synthetic 1.2 s 64 px videos) scores {args.videos} held-out videos ({clips} clips, "
        f"extract's default sliding windows), {args.workers} decoding workers, CPU; whole command timed (model load, "
        "Lightning start-up, decoding, forward, writing), rounds interleaved.\n\n"
        + md_table(rows, ["command", "median s", "best s", "clips/s (median)"])
        + f"\n\npredict / extract throughput: **{ratio:.2f}x**. Spearman(predicted intensity, label) on the held-out "
        f"videos: **{rho:.3f}**."
    )
    write_results("predict", {"times": times, "clips": clips, "ratio": ratio, "spearman": rho}, md)
    print(md)


if __name__ == "__main__":
    main()
