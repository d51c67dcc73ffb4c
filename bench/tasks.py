"""Learning on synthetic data: every video task of the engine trained end to end on ``emovid synth`` videos.

The issue's bar on CPU with test-size backbones: intensity validation pairwise accuracy >= 0.90 and
Spearman(||embedding||, intensity) >= 0.8; V2V pairwise accuracy >= 0.85; valence/arousal CCC >= 0.7 on both;
VCE top-1-in-top-3 >= 2x chance. Figures go to BENCHMARKS.md (section ``tasks``).

Run: ``python bench/tasks.py [--videos 200] [--tasks intensity,v2v,valence_arousal,vce] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, write_results  # noqa: E402
from emovid.config import TrainConfig  # noqa: E402
from emovid.train import train  # noqa: E402

COMMON = dict(batch_size=16, lr=3e-3, weight_decay=0.0, num_workers=2, progress_bar=False, input_size=64)

SETUPS = {
    "intensity": dict(
        data="intensity.csv",
        model="test_resnet18_3dstem",
        score="norm",
        pairs="random",
        pairs_per_video=4,
        monitor=["val/pair_acc", "val/spearman_norm"],
    ),
    "v2v": dict(data="v2v", model="test_resnet18_3dstem", loss="ranknet", val_fraction=0.3, monitor=["val/pair_acc"]),
    "valence_arousal": dict(
        data="va.csv",
        video_root="videos",
        model="test_resnet18_3dstem_gru",
        loss="mse+ccc",
        num_frames=8,
        monitor=["val/ccc_valence", "val/ccc_arousal"],
    ),
    "vce": dict(data="vce", model="test_resnet18_3dstem", loss="bce", monitor=["val/top1_in_top3", "val/top3_overlap"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--tasks", default=",".join(SETUPS))
    ap.add_argument("--data", default=None, help="an existing `emovid synth` folder (default: generate one)")
    ap.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from bench/results/tasks.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig field")
    args = ap.parse_args()
    if args.render_only:
        args.tasks = ""
    from emovid.data.synth import generate

    prev = Path(__file__).resolve().parent / "results" / "tasks.json"
    results = json.loads(prev.read_text()).get("results", {}) if prev.exists() else {}  # keep tasks not rerun
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "synth"
        if not args.data and args.tasks:
            generate(data, num_videos=args.videos, seed=0, size=112, fps=15, seconds=3.0)
        for name in [t for t in args.tasks.split(",") if t]:
            setup = dict(SETUPS[name])
            monitor = setup.pop("monitor")
            for item in args.set:
                key, _, value = item.partition("=")
                setup[key] = yaml.safe_load(value)
            if "video_root" in setup:
                setup["video_root"] = str(data / setup["video_root"])
            cfg = TrainConfig(
                task=name,
                output_dir=str(Path(tmp) / name),
                epochs=args.epochs,
                **{**COMMON, **setup, "data": str(data / setup["data"])},
            )
            t0 = time.perf_counter()
            summary = train(cfg)
            secs = time.perf_counter() - t0
            best = summary["best_metrics"]
            results[name] = {
                "best": best,
                "test": summary.get("test_metrics"),
                "seconds": secs,
                "config": cfg.to_dict(),
                "monitor": monitor,
                "videos": args.videos,
            }
            print(name, best, flush=True)
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "task": name,
                "model": r["config"]["model"],
                "epochs": r["config"]["epochs"],
                "minutes": r["seconds"] / 60,
                **{m.split("/")[1]: r["best"].get(m) for m in r["monitor"]},
                "test": json.dumps({k: round(v, 3) for k, v in (r.get("test") or {}).items() if "chance" not in k}),
            }
        )
    cols = sorted({k for r in rows for k in r} - {"task", "model", "epochs", "minutes", "test"})
    md = (
        "## Learning on synthetic videos (`python bench/tasks.py --tasks T --epochs E`, epochs per row)\n\n"
        "`emovid synth` 200 videos (112 px, 3 s, 15 fps), 20 % held out by the engine's split; tiny "
        "backbones at 64 px from random init, CPU. Best validation epoch; `test` = the dataset's own test split "
        "where it has one (VCE test labels, V2V test/listwise comparisons).\n\n"
        + md_table(rows, ["task", "model", "epochs", "minutes", *cols, "test"])
    )
    write_results("tasks", {"results": results}, md)
    print(md)


if __name__ == "__main__":
    main()
