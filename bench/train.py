"""Epoch time of head training with ``--cache-features`` vs decoding and embedding every epoch.

Same task (intensity, in-batch RankNet pairs), same frozen backbone, same deterministic clips (no augmentation),
so both runs see identical inputs and reach the same metrics; only where the embeddings come from differs.
Steady-state epoch time (epochs after the first) is compared; the cache's one-off fill is reported too.

Run: ``python bench/train.py [--videos 100] [--model x3d_xs] [--epochs 4]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightning.pytorch as pl  # noqa: E402

from _common import md_table, write_results  # noqa: E402
from emovid.config import TrainConfig  # noqa: E402
from emovid.train import train  # noqa: E402


class EpochTimer(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self._t)


def run(data: Path, out: Path, model: str, epochs: int, cache: bool, workers: int) -> dict:
    timer = EpochTimer()
    cfg = TrainConfig(
        task="intensity",
        data=str(data / "intensity.csv"),
        output_dir=str(out),
        model=model,
        epochs=epochs,
        batch_size=16,
        lr=1e-3,
        head_lr=1e-3,
        score="linear",
        freeze_backbone=True,
        cache_features=cache,
        augment=False,
        num_workers=workers,
        progress_bar=False,
    )
    t0 = time.perf_counter()
    summary = train(cfg, callbacks=[timer], trainer_kwargs={"num_sanity_val_steps": 0})
    total = time.perf_counter() - t0
    steady = sorted(timer.times[1:] or timer.times)
    return {
        "epoch_s": steady[len(steady) // 2],
        "epoch_times_s": timer.times,
        "total_s": total,
        "best": summary["best_metrics"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--model", default="x3d_xs")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from emovid.data.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", num_videos=args.videos, seed=0, size=112, fps=15, seconds=3.0)
        decode = run(tmp / "data", tmp / "decode", args.model, args.epochs, False, args.workers)
        cached = run(tmp / "data", tmp / "cache", args.model, args.epochs, True, args.workers)
    ratio = decode["epoch_s"] / cached["epoch_s"]
    same = abs(decode["best"].get("val/pair_acc", 0) - cached["best"].get("val/pair_acc", 0)) < 1e-6
    rows = [
        {
            "mode": "decode + embed every epoch",
            "epoch s": decode["epoch_s"],
            "run total s": decode["total_s"],
            "val pair acc": decode["best"].get("val/pair_acc"),
        },
        {
            "mode": "--cache-features",
            "epoch s": cached["epoch_s"],
            "run total s": cached["total_s"],
            "val pair acc": cached["best"].get("val/pair_acc"),
        },
    ]
    md = (
        f"## Training epochs: `--cache-features` vs decoding every epoch\n\n`python bench/train.py --videos "
        f"{args.videos} --model {args.model} --epochs {args.epochs}` — intensity task, frozen {args.model}, "
        f"{args.videos} synthetic 3 s 112 px videos, batch 16, {args.workers} loader workers, CPU. Steady-state "
        f"epoch time (median of epochs 2..{args.epochs}); the cached run's first epoch includes filling the cache.\n\n"
        + md_table(rows, ["mode", "epoch s", "run total s", "val pair acc"])
        + f"\n\nSpeed-up per epoch: **{ratio:.0f}x**; same metrics: {'yes' if same else 'no'}."
    )
    write_results("train", {"decode": decode, "cache": cached, "speedup": ratio, "same_metrics": same}, md)
    print(md)


if __name__ == "__main__":
    main()
