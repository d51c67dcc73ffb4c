"""Few labels: valence/arousal CCC after self-supervised pretraining (BYOL / DINO) vs from random init (VAERR).

Setup (all on ``emovid synth`` data, CPU):

1. ``--videos`` synthetic face videos (64x64, 10 fps, 3 s); a fixed random ``--labelled`` fraction of them keeps its
   valence/arousal labels, the rest is held out for the final evaluation.
2. Pretext: ``emovid.pretrain.pretrain`` (BYOL and/or DINO) on *all* videos, no labels, front-end
   ``test_resnet18_3dstem`` (tiny 3D-conv stem + ResNet trunk, greyscale 32x32), 8-frame clips.
3. Downstream, the same budget for every initialisation: ``emovid.train.train`` on the labelled videos only
   (task ``valence_arousal``, ``test_resnet18_3dstem_gru``, loss ``mse+ccc``; the engine holds out 20 % of the
   labelled videos to pick the best epoch); the pretrained front-end is loaded with
   ``pretrained=OUT/model.safetensors, allow_size_mismatch=True`` (VAERR's ``--model-path --allow-size-mismatch``);
   the random-init run differs only in ``pretrained=None``.
4. Evaluation: per-frame CCC of valence and arousal (torchmetrics, over all frames of the centre 16-frame clip of
   every held-out video), for the engine's exported best model and for the last epoch.

Run: ``python bench/pretrain.py [--videos 200] [--labelled 0.1] [--methods byol] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import md_table, write_results  # noqa: E402
from emovid.config import TrainConfig  # noqa: E402
from emovid.models.base import pooled  # noqa: E402

PRETEXT_MODEL = "test_resnet18_3dstem"
DOWNSTREAM_MODEL = "test_resnet18_3dstem_gru"


def split_labels(data: Path, fraction: float, seed: int) -> tuple[Path, Path, int, int]:
    """Write ``labelled.csv`` (a random ``fraction`` of the videos) and ``heldout.csv`` (the rest) from va.csv."""
    with open(data / "va.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = sorted({r["video"] for r in rows})
    rng = np.random.default_rng(seed)
    n_lab = max(5, int(round(fraction * len(ids))))
    labelled = set(rng.permutation(ids)[:n_lab].tolist())
    paths = {}
    for name, keep in (("labelled", lambda v: v in labelled), ("heldout", lambda v: v not in labelled)):
        p = data / f"{name}.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["video", "time", "valence", "arousal"])
            w.writeheader()
            w.writerows(r for r in rows if keep(r["video"]))
        paths[name] = p
    return paths["labelled"], paths["heldout"], n_lab, len(ids) - n_lab


def evaluate(model, cfg: TrainConfig, task, heldout: Path, video_root: Path, workers: int) -> dict[str, float]:
    """CCC per dimension over every frame of the held-out videos' evaluation clips (the task's own metrics)."""
    from torch.utils.data import DataLoader

    from emovid.data.datasets import ClipDataset, collate_skip_none
    from emovid.data.readers.sewa import read_va_csv
    from emovid.train import _loaders

    records = read_va_csv(str(heldout), str(video_root))
    _, eval_loader = _loaders(cfg, task, model)
    ds = ClipDataset(records, eval_loader, task.targets, seed=0)
    dl = DataLoader(ds, batch_size=16, num_workers=workers, collate_fn=collate_skip_none)
    model.eval()
    outs: dict[str, list] = {}
    with torch.no_grad():
        for batch in dl:
            for k, v in task.predict(model, batch, False).items():
                outs.setdefault(k, []).append(torch.as_tensor(v))
    cat = {k: torch.cat(v).numpy() for k, v in outs.items()}
    return task.compute_metrics(cat)


def ridge_probe(weights: str | None, labelled: Path, heldout: Path, video_root: Path) -> dict[str, float]:
    """Frozen front-end: ridge regression of each video's mean valence/arousal on its clip embedding.

    Trained on the labelled videos, CCC over the held-out videos (one value per video). A direct read of what the
    pretext representation holds, without the downstream fine-tuning's noise.
    """
    from sklearn.linear_model import RidgeCV
    from torchmetrics.functional import concordance_corrcoef

    from emovid.data.datasets import ClipLoader
    from emovid.data.readers.sewa import read_va_csv
    from emovid.models import create_model, create_transform
    from emovid.video.sampling import parse_sampler

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random-init front-end: the same weights as the downstream seed-0 run would start
        model = create_model(PRETEXT_MODEL, pretrained=weights, num_classes=0).eval()
    pc = model.pretrained_cfg
    loader = ClipLoader(parse_sampler("center:16x1"), create_transform(pc), min(pc.input_size), in_chans=pc.in_chans)
    sets = []
    for path in (labelled, heldout):
        xs, ys = [], []
        for rec in read_va_csv(str(path), str(video_root)):
            clip, times = loader(rec)
            with torch.no_grad():
                xs.append(pooled(model, clip[None])[0].numpy())
            v, a = rec.at(times)
            ys.append([float(np.mean(v)), float(np.mean(a))])
        sets.append((np.asarray(xs), np.asarray(ys)))
    (xl, yl), (xh, yh) = sets
    mu, sd = xl.mean(0), xl.std(0) + 1e-6
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((xl - mu) / sd, yl)
    c = concordance_corrcoef(torch.tensor(ridge.predict((xh - mu) / sd)), torch.tensor(yh)).numpy()
    return {"ccc_valence": float(c[0]), "ccc_arousal": float(c[1]), "ccc_mean": float(c.mean())}


class KeepFinal:
    """A Lightning callback keeping the task model's weights at the end of training (the last epoch's)."""

    def __new__(cls):
        import lightning.pytorch as pl

        class _Keep(pl.Callback):
            state: dict | None = None

            def on_train_end(self, trainer, module):
                self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}

        return _Keep()


def downstream(
    labelled: Path, video_root: Path, out: Path, pretrained: str | None, seed: int, args
) -> tuple[dict, dict, dict, float]:
    from emovid.train import load_model_dir, train

    cfg = TrainConfig(
        task="valence_arousal",
        data=str(labelled),
        video_root=str(video_root),
        output_dir=str(out),
        model=DOWNSTREAM_MODEL,
        pretrained=pretrained,
        allow_size_mismatch=True,
        loss=args.loss,
        epochs=args.downstream_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=0.0,
        train_sampler="random:16x1",
        eval_sampler="center:16x1",
        val_fraction=0.2,
        seed=seed,
        num_workers=args.workers,
        progress_bar=False,
        log_every_n_steps=1,
    )
    keep = KeepFinal()
    t0 = time.perf_counter()
    summary = train(cfg, callbacks=[keep])
    secs = time.perf_counter() - t0
    model, cfg2, task = load_model_dir(out)
    best = evaluate(model, cfg2, task, args.heldout, video_root, args.workers)
    model.load_state_dict(keep.state)
    last = evaluate(model, cfg2, task, args.heldout, video_root, args.workers)
    return best, last, summary["best_metrics"], secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--labelled", type=float, default=0.1)
    ap.add_argument("--methods", default="byol", help="comma list of byol,dino")
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--pretrain-batch-size", type=int, default=16)
    ap.add_argument("--downstream-epochs", type=int, default=25)
    ap.add_argument("--lr", type=float, default=1e-3, help="downstream learning rate")
    ap.add_argument("--loss", default="mse", help="downstream loss (mse|ccc|mse+ccc|bins)")
    ap.add_argument("--batch-size", type=int, default=4, help="downstream batch size")
    ap.add_argument("--pretrained-dir", type=Path, default=None, help="reuse pretext outputs PRETRAINED_DIR/pretrain_M")
    ap.add_argument("--seeds", type=int, default=2, help="downstream runs per initialisation")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    import lightning.pytorch as pl

    from emovid.data.synth import generate
    from emovid.pretrain import PretrainConfig, pretrain

    pl.seed_everything(0, verbose=False)
    tmp = tempfile.TemporaryDirectory(prefix="emovid-bench-pretrain-")
    work = args.keep or Path(tmp.name)
    data = work / "synth"
    t0 = time.perf_counter()
    generate(data, num_videos=args.videos, seed=0, size=64, fps=10, seconds=3.0, workers=2)
    video_root = data / "videos"
    labelled, heldout, n_lab, n_held = split_labels(data, args.labelled, seed=0)
    args.heldout = heldout
    print(f"data: {args.videos} videos, {n_lab} labelled, {n_held} held out ({time.perf_counter() - t0:.0f} s)")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    pretext: dict[str, dict] = {}
    for m in methods:
        pcfg = PretrainConfig(
            method=m,
            videos=str(video_root),
            output_dir=str(work / f"pretrain_{m}"),
            model=PRETEXT_MODEL,
            num_frames=8,
            epochs=args.pretrain_epochs,
            batch_size=args.pretrain_batch_size,
            lr=1e-3,
            warmup_epochs=2,
            byol_hidden_dim=512,
            byol_proj_dim=128,
            dino_hidden_dim=512,
            dino_bottleneck_dim=128,
            dino_out_dim=1024,
            local_crops=4,
            warmup_teacher_temp=0.04,
            teacher_temp=0.07,
            warmup_teacher_temp_epochs=max(1, args.pretrain_epochs // 3),
            num_workers=args.workers,
            progress_bar=False,
        )
        t1 = time.perf_counter()
        if args.pretrained_dir is not None:  # reuse an earlier pretext run (tuning the downstream side only)
            import json

            pcfg.output_dir = str(args.pretrained_dir / f"pretrain_{m}")
            s = json.loads((Path(pcfg.output_dir) / "pretrain_summary.json").read_text())
        else:
            s = pretrain(pcfg)
        secs = None if args.pretrained_dir is not None else time.perf_counter() - t1
        pretext[m] = {"weights": s["weights"], "seconds": secs, "final_loss": s["loss"], "steps": s["global_step"]}
        print(f"pretrain {m}: {pretext[m]}")

    inits = [("random init", None)] + [(f"{m.upper()} pretrained", pretext[m]["weights"]) for m in methods]
    rows, runs = [], []
    for label, weights in inits:
        probe = ridge_probe(weights, labelled, heldout, video_root)
        print(f"{label} ridge probe: {probe}")
        per_seed = []
        for seed in range(args.seeds):
            out = work / f"down_{label.split()[0].lower()}_{seed}"
            best, last, val, secs = downstream(labelled, video_root, out, weights, seed, args)
            per_seed.append({"seed": seed, "best": best, "last": last, "labelled_val": val, "seconds": secs})
            print(f"{label} seed {seed}: best {best} | last {last} ({secs:.0f} s)")
        runs.append({"init": label, "pretrained": weights, "ridge_probe": probe, "runs": per_seed})

        def mean(key: str, metric: str, runs=per_seed) -> float:
            return float(np.mean([r[key][metric] for r in runs]))

        def sd(key: str, metric: str, runs=per_seed) -> float:
            return float(np.std([r[key][metric] for r in runs]))

        rows.append(
            {
                "init": label,
                "CCC valence": mean("best", "ccc_valence"),
                "CCC arousal": mean("best", "ccc_arousal"),
                "CCC mean": mean("best", "ccc_mean"),
                "± sd": sd("best", "ccc_mean"),
                "last-epoch CCC mean": mean("last", "ccc_mean"),
                "last ± sd": sd("last", "ccc_mean"),
                "frozen ridge probe CCC v / a": f"{probe['ccc_valence']:.3f} / {probe['ccc_arousal']:.3f}",
            }
        )
    total = time.perf_counter() - t0
    cols = ["init", "CCC valence", "CCC arousal", "CCC mean", "± sd", "last-epoch CCC mean", "last ± sd"]
    cols.append("frozen ridge probe CCC v / a")
    table = md_table(rows, cols)
    print(table)
    pre_lines = "; ".join(
        f"{m.upper()}: {v['steps']} steps, final loss {v['final_loss']:.3f}, "
        + (f"{v['seconds'] / 60:.1f} min" if v["seconds"] is not None else "reused from an earlier run of this script")
        for m, v in pretext.items()
    )
    md = f"""## Self-supervised pretraining with few labels (VAERR): valence/arousal CCC, pretrained vs random init

`python bench/pretrain.py --videos {args.videos} --labelled {args.labelled} --methods {args.methods} \
--pretrain-epochs {args.pretrain_epochs} --pretrain-batch-size {args.pretrain_batch_size} \
--downstream-epochs {args.downstream_epochs} --lr {args.lr:g} --loss {args.loss} --batch-size {args.batch_size} \
--seeds {args.seeds}`

- Data: `emovid synth`, {args.videos} videos (64x64, 10 fps, 3 s). {n_lab} videos ({args.labelled:.0%}) keep labels;
  the other {n_held} are the held-out test set (never trained on with labels).
- Pretext: {", ".join(m.upper() for m in methods)} on all {args.videos} videos, no labels, `{PRETEXT_MODEL}`
  (greyscale 32x32, 8-frame clips), {args.pretrain_epochs} epochs, batch {args.pretrain_batch_size}, AdamW lr 1e-3.
  {pre_lines}.
- Downstream (same budget for every row): `emovid.train.train` task `valence_arousal`, `{DOWNSTREAM_MODEL}`,
  loss {args.loss}, {args.downstream_epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, 16-frame clips; the engine
  picks the best epoch on
  20 % of the labelled videos. Pretrained rows load the pretext `model.safetensors` with `allow_size_mismatch=True`
  (front-end from the pretext, GRU and head fresh); the random-init row differs only in `pretrained=None`.
- Metric: per-frame CCC on the {n_held} held-out videos (centre 16-frame clip each), mean over {args.seeds} downstream
  seeds (± sd across seeds); "CCC" columns use the engine's exported best model, "last-epoch" the final weights.
- Frozen ridge probe: the front-end alone (no fine-tuning), clip embedding of the centre 16 frames, ridge regression
  (RidgeCV) of each video's mean valence/arousal fitted on the labelled videos, CCC over the held-out videos.

{table}

Total wall time {total / 60:.1f} min.
"""
    data_out = {
        "setup": {
            "videos": args.videos,
            "labelled": n_lab,
            "heldout": n_held,
            "methods": methods,
            "pretrain_epochs": args.pretrain_epochs,
            "downstream_epochs": args.downstream_epochs,
            "downstream_lr": args.lr,
            "seeds": args.seeds,
            "pretext_model": PRETEXT_MODEL,
            "downstream_model": DOWNSTREAM_MODEL,
        },
        "pretext": pretext,
        "rows": rows,
        "runs": runs,
        "total_seconds": total,
    }
    if not args.no_write:
        write_results("pretrain", data_out, md)
    tmp.cleanup()


if __name__ == "__main__":
    main()
