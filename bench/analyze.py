"""Benchmark ``emovid analyze``: detector recall, frames/s and peak RSS, side by side with the ``fer`` package.

Sections (each measured in this one run):

1. **Face detector recall** of every preset in :data:`emovid.faces.DETECTORS` on (a) synthetic faces from
   :mod:`emovid.data.synth` (the drawn head ellipse is the ground truth) and (b) the two real photos bundled in
   ``emovid/assets`` (public domain / CC0; hand-set face boxes) under 72 variations each (scale, rotation,
   brightness, mirror). A hit: a detected box whose centre lies in the true box and whose side is 0.4-1.6 times the
   true width. Also false detections on face-free frames (gradients and noise). ``yunet`` is measured once its
   weights are cached (``huggingface-cli download opencv/face_detection_yunet face_detection_yunet_2023mar.onnx``
   on a connected machine); otherwise its row says so.
2. **Throughput and peak RSS** of ``analyze_file`` (bundled FER2013 mini-Xception) on one 640x360, 25 fps, 30 s
   face video at 5 fps, each configuration in a fresh process (peak RSS = ``ru_maxrss`` of that process): the
   default (full-frame face search every 5th analysed frame, searches at the known faces' sizes in between) and
   ``--redetect-every 1`` (full search on every frame, as ``fer`` does). Model and detector are built and the
   libraries imported before the clock starts (once per run, as in ``emovid analyze``; the fer side likewise builds
   ``FER()`` and ``Video`` first), opening and indexing the video is timed; every pipeline runs ``--rounds`` times
   (default 3), rounds interleaved; tables give medians and ranges, and CPU time besides wall time.
3. **fer side by side**: the ``fer`` package's own ``Video.analyze`` on the same video and frames (every 5th frame),
   with its default TFLite model and with its Keras model, against emovid with the same detector settings
   (``--detector haar-fer``): frames/s and per-frame agreement of the top emotion. ``fer`` needs TensorFlow, which
   is not an emovid dependency; give an interpreter that has it with ``--fer-python`` or ``EMOVID_FER_PYTHON``::

       python3 -m venv /tmp/fervenv
       /tmp/fervenv/bin/pip install tensorflow-cpu pandas requests tqdm Pillow "opencv-python-headless<5" setuptools
       /tmp/fervenv/bin/pip install --no-deps fer==25.10.3   # its other deps (moviepy, facenet-pytorch) are optional
       python bench/analyze.py --fer-python /tmp/fervenv/bin/python

   (OpenCV 5 dropped ``CascadeClassifier`` from the main module, hence ``<5``.) Without it the section says
   "not installed".
4. **One hour**: peak RSS of ``analyze_file`` on a generated 1-hour 128x128 video (goal < 1.5 GB), at
   ``--hour-fps`` (default 1) to keep the run short; memory does not depend on the rate except through the
   number of frame records kept for the JSON.

Run: ``python bench/analyze.py [--quick] [--fer-python PATH]``. Writes ``bench/results/analyze.json`` and the
``analyze`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import md_table, write_results  # noqa: E402

#: Hand-set face boxes (x, y, w, h) in the bundled 320x320 photos (also in emovid/assets/README.md).
REAL_FACES = {"astronaut.jpg": (111, 42, 59, 59), "camera.jpg": (113, 64, 56, 60)}


# ---- 1. recall ------------------------------------------------------------------------------------------------


def _hit(det_boxes, gt) -> bool:
    gx, gy, gw, gh = gt
    for x, y, w, h in det_boxes:
        cx, cy = x + w / 2, y + h / 2
        if gx <= cx <= gx + gw and gy <= cy <= gy + gh and 0.4 * gw <= max(w, h) <= 1.6 * gw:
            return True
    return False


def synth_frames(n_videos: int, sizes=(112, 224), per_video: int = 4):
    """``(rgb, gt_box)`` pairs of synthetic faces; the ground truth is the drawn head ellipse's bounding box."""
    from emovid.data.synth import background, render_frame, sample_latent, trajectories

    out = []
    for size in sizes:
        for i in range(n_videos):
            lat = sample_latent(7, i)
            traj = trajectories(lat, 45, 15)
            bg = background(lat, size)
            for k in np.linspace(0, 44, per_video).astype(int):
                u = 0.28 * size * lat.scale
                cx = size / 2 + (lat.dx + float(traj["offset_x"][k])) * size
                cy = size / 2 + 0.03 * size + (lat.dy + float(traj["offset_y"][k])) * size
                out.append((render_frame(lat, traj, int(k), size, bg), (cx - u, cy - 1.3 * u, 2 * u, 2.6 * u)))
    return out


def real_frames():
    """The bundled photos under scale x rotation x brightness x mirror variations, with transformed true boxes."""
    import cv2

    from emovid.demo import asset_path

    out = []
    for name, (x, y, w, h) in REAL_FACES.items():
        img = cv2.cvtColor(cv2.imread(str(asset_path(name))), cv2.COLOR_BGR2RGB)
        for scale in (0.6, 1.0, 1.5, 2.0):
            for angle in (-10, 0, 10):
                for gain in (0.6, 1.0, 1.3):
                    for flip in (False, True):
                        s = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                        hh, ww = s.shape[:2]
                        m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
                        s = cv2.warpAffine(s, m, (ww, hh), borderMode=cv2.BORDER_REFLECT)
                        s = np.clip(s.astype(np.float32) * gain, 0, 255).astype(np.uint8)
                        cx, cy = (x + w / 2) * scale, (y + h / 2) * scale
                        cx, cy = m @ np.array([cx, cy, 1.0])
                        if flip:
                            s = np.ascontiguousarray(s[:, ::-1])
                            cx = ww - cx
                        gw, gh = w * scale, h * scale
                        out.append((name, s, (cx - gw / 2, cy - gh / 2, gw, gh)))
    return out


def empty_frames(n: int = 40):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        if i % 2:
            f = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        else:
            g = np.linspace(0, 255, 320)[None, :, None] * rng.uniform(0.3, 1, 3)
            f = np.broadcast_to(g, (240, 320, 3)).astype(np.uint8)
        frames.append(np.ascontiguousarray(f))
    return frames


def bench_recall(quick: bool, names=None) -> list[dict]:
    from emovid.errors import WeightsUnavailableError
    from emovid.faces import DETECTORS, create_detector

    synth = synth_frames(15 if quick else 60)
    real = real_frames()
    empty = empty_frames()
    rows = []
    for name in names or DETECTORS:
        try:
            det = create_detector(name)
        except WeightsUnavailableError:  # yunet before its weights are cached: say so instead of a figure
            rows.append({"detector": name, "synth_recall": "weights not cached (offline)"})
            print(rows[-1], flush=True)
            continue
        t0 = time.perf_counter()
        s_hits = sum(_hit([f.box for f in det.detect(img)], gt) for img, gt in synth)
        t_synth = time.perf_counter() - t0
        r_hits = {n: 0 for n in REAL_FACES}
        r_false = 0
        for n, img, gt in real:
            faces = det.detect(img)
            ok = _hit([f.box for f in faces], gt)
            r_hits[n] += ok
            r_false += len(faces) - int(ok)
        e_false = sum(len(det.detect(f)) for f in empty)
        per_photo = len(real) // len(REAL_FACES)
        rows.append(
            {
                "detector": name,
                "synth_recall": round(s_hits / len(synth), 3),
                "synth_frames": len(synth),
                "astronaut_recall": round(r_hits["astronaut.jpg"] / per_photo, 3),
                "camera_recall": round(r_hits["camera.jpg"] / per_photo, 3),
                "real_false_per_image": round(r_false / len(real), 3),
                "false_on_empty": e_false,
                "ms_per_synth_frame": round(1000 * t_synth / len(synth), 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


# ---- 2./4. throughput and RSS in fresh processes --------------------------------------------------------------


def make_face_video(path: str, seconds: float = 30.0, fps: int = 25, size=(360, 640)) -> str:
    """A 640x360 video: a synthetic face (changing expression every 5 s) moving over a wider background."""
    import dataclasses

    from emovid.data.readers.mosei import FER_CLASSES
    from emovid.data.synth import CLASS_VALENCE, render_frame, sample_latent, trajectories
    from emovid.video import write_video

    h, w = size
    base = sample_latent(3, 1)
    face = 240
    n_seg = int(5 * fps)

    def frames():
        bg = np.zeros((h, w, 3), np.uint8)
        bg[:] = np.linspace(40, 160, w, dtype=np.uint8)[None, :, None]
        for s in range(int(round(seconds / 5))):
            name = FER_CLASSES[(s * 3) % 7]
            lat = dataclasses.replace(
                base, emotion=FER_CLASSES.index(name), intensity=0.9, valence=0.9 * CLASS_VALENCE[name], arousal=-0.4
            )
            traj = trajectories(lat, n_seg, fps)
            for k in range(n_seg):
                img = bg.copy()
                x0 = int((w - face) * (0.5 + 0.4 * math.sin(2 * math.pi * (s * n_seg + k) / (fps * 12))))
                img[(h - face) // 2 : (h - face) // 2 + face, x0 : x0 + face] = render_frame(lat, traj, k, face)
                yield img

    return write_video(path, frames(), fps=fps, crf=20)


def make_hour_video(path: str, fps: int = 5, size: int = 128) -> str:
    """One hour at ``fps``: 20 s of synthetic face frames rendered once and repeated."""
    from emovid.data.synth import background, render_frame, sample_latent, trajectories
    from emovid.video import write_video

    lat = sample_latent(0, 1)
    n = 20 * fps
    traj = trajectories(lat, n, fps)
    bg = background(lat, size)
    loop = [render_frame(lat, traj, k, size, bg) for k in range(n)]
    total = 3600 * fps
    return write_video(path, (loop[i % n] for i in range(total)), fps=fps, crf=28, options={"preset": "veryfast"})


def _child_ours(
    video: str, fps: float, detector: str, out_json: str, redetect: int = 5, marks: str = "detector"
) -> None:
    # Model and detector are built, and the decoding library imported, before the clock starts: `emovid analyze`
    # builds them once per run, and the fer side imports cv2 and builds its FER() and Video before timing analyze().
    import resource

    from emovid.utils.threads import configure, spare_core_for_decoding

    configure()  # as the `emovid` command does before torch loads: OpenMP threads that yield when waiting
    spare = spare_core_for_decoding().__enter__()  # as `emovid analyze` does: decoding has a core of its own
    import av  # noqa: F401

    from emovid.analyze import AnalyzeOptions, EmotionClassifier, analyze_file
    from emovid.faces import create_detector

    clf = EmotionClassifier("fer_mini_xception")
    opts = AnalyzeOptions(fps=fps, detector=detector, redetect_every=redetect, progress=False, landmarks=marks)
    det = create_detector(opts.detector, redetect_every=opts.redetect_every)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c0, t0 = os.times(), time.perf_counter()
    mesh = None
    if marks == "full":
        from emovid.faces.facemesh import FaceMesh

        mesh = FaceMesh()
    an = analyze_file(video, clf, opts, detector=det, mesh=mesh)
    wall, c1 = time.perf_counter() - t0, os.times()
    res = an.result
    tops = []
    for fr in res["frames"]:
        faces = fr["faces"]
        tops.append(
            {"frame": fr["frame"], "n": len(faces), "top": max(faces[0]["emotions"], key=faces[0]["emotions"].get)}
            if faces
            else {"frame": fr["frame"], "n": 0, "top": None}
        )
    payload = {
        "torch_threads": spare.threads,
        "wall_s": wall,
        "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
        "frames": len(res["frames"]),
        "frames_with_face": res["summary"]["frames_with_face"],
        "rss_after_load_mb": rss0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tops": tops,
    }
    with open(out_json, "w") as f:
        json.dump(payload, f)


_FER_CHILD = r"""
import json, resource, sys, time, logging
logging.disable(logging.WARNING)
video, freq, use_tflite, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
import cv2
# fer's Video.analyze calls cv2.waitKey / destroyAllWindows unconditionally; headless OpenCV builds lack them.
cv2.waitKey = lambda *a: -1
cv2.destroyAllWindows = lambda *a: None
from fer.fer import FER
from fer.classes import Video
calls = []
class Rec(FER):
    def detect_emotions(self, img, face_rectangles=None):
        r = super().detect_emotions(img, face_rectangles)
        calls.append(r)
        return r
det = Rec(use_tflite=use_tflite)
import tempfile
v = Video(video, outdir=tempfile.mkdtemp())
import os
c0, t0 = os.times(), time.perf_counter()
v.analyze(det, display=False, frequency=freq, save_frames=False, save_video=False, annotate_frames=False,
          zip_images=False, output="pandas")
wall, c1 = time.perf_counter() - t0, os.times()
tops = [{"frame": k * freq, "n": len(r), "top": max(r[0]["emotions"], key=r[0]["emotions"].get) if r else None}
        for k, r in enumerate(calls)]
cpu = (c1.user - c0.user) + (c1.system - c0.system)
json.dump({"wall_s": wall, "cpu_s": cpu, "frames": len(calls), "frames_with_face": sum(1 for r in calls if r),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tops": tops}, open(out, "w"))
"""


def run_ours(video: str, fps: float, detector: str, tmp: str, redetect: int = 5, marks: str = "detector") -> dict:
    out = os.path.join(tmp, f"ours-{detector}-{fps}-{redetect}-{marks}.json")
    cmd = [sys.executable, __file__, "--_child", video, str(fps), detector, out, str(redetect), marks]
    subprocess.run(cmd, check=True)
    return json.load(open(out))


def run_fer(python: str, video: str, freq: int, use_tflite: bool, tmp: str) -> dict | None:
    out = os.path.join(tmp, f"fer-{int(use_tflite)}.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run(
        [python, "-c", _FER_CHILD, video, str(freq), "1" if use_tflite else "0", out], env=env, capture_output=True
    )
    if r.returncode != 0:
        print(r.stderr.decode()[-2000:], file=sys.stderr)
        return None
    return json.load(open(out))


def agreement(a: dict, b: dict) -> dict:
    """Per-frame agreement over frames both analysed: same face found/not found, and same top emotion."""
    ta = {t["frame"]: t for t in a["tops"]}
    tb = {t["frame"]: t for t in b["tops"]}
    common = sorted(set(ta) & set(tb))
    both = [f for f in common if ta[f]["n"] == 1 and tb[f]["n"] == 1]
    same_top = sum(ta[f]["top"] == tb[f]["top"] for f in both)
    same_det = sum((ta[f]["n"] > 0) == (tb[f]["n"] > 0) for f in common)
    return {
        "frames_compared": len(common),
        "same_face_presence": round(same_det / max(len(common), 1), 4),
        "frames_one_face_both": len(both),
        "top_emotion_agreement": round(same_top / max(len(both), 1), 4),
    }


def fer_python(arg: str | None) -> str | None:
    cands = [arg, os.environ.get("EMOVID_FER_PYTHON"), sys.executable]
    for c in cands:
        if not c:
            continue
        r = subprocess.run([c, "-c", "import fer.fer, tensorflow"], capture_output=True)
        if r.returncode == 0:
            return c
    return None


# ---- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _child_ours(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer synthetic frames, 10 s video, 1-hour test skipped")
    ap.add_argument("--fer-python", default=None, help="Python interpreter with the fer package (and TensorFlow).")
    ap.add_argument("--hour-fps", type=float, default=1.0, help="analysis rate for the 1-hour RSS test")
    ap.add_argument("--skip-hour", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of every pipeline")
    ap.add_argument(
        "--reuse-recall", action="store_true", help="recall rows from the last results file (new detectors run)"
    )
    args = ap.parse_args()

    data: dict = {}
    md: list[str] = []
    last = Path(__file__).resolve().parent / "results" / "analyze.json"
    if args.reuse_recall and last.exists():
        from emovid.faces import DETECTORS

        kept = {r["detector"]: r for r in json.loads(last.read_text())["detector_recall"] if "synth_frames" in r}
        new = {r["detector"]: r for r in bench_recall(args.quick, [n for n in DETECTORS if n not in kept])}
        rows = [kept.get(n) or new[n] for n in DETECTORS]
    else:
        rows = bench_recall(args.quick)
    data["detector_recall"] = rows
    md.append(
        "**Face detector recall** (hit = box centre inside the true face, side 0.4-1.6x its width). Synthetic: "
        f"{rows[0]['synth_frames']} `emovid.data.synth` frames (112 and 224 px). Real: the two bundled photos "
        "(public domain / CC0) x 72 variations each (scale 0.6-2, rotation ±10°, brightness 0.6-1.3, mirror). "
        "`false_on_empty`: boxes on 40 face-free frames (gradients, noise).\n\n"
        + md_table(
            rows,
            [
                "detector",
                "synth_recall",
                "astronaut_recall",
                "camera_recall",
                "real_false_per_image",
                "false_on_empty",
                "ms_per_synth_frame",
            ],
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        video = make_face_video(os.path.join(tmp, "face.mp4"), seconds=10.0 if args.quick else 30.0)
        video_s = 10.0 if args.quick else 30.0
        fps = 5.0
        # Every pipeline runs once per round, rounds interleaved, so load from other processes on the machine
        # affects all of them alike; tables give the median over rounds and speed-ups the median of the per-round
        # ratios (outputs are deterministic: agreement is taken from the first round).
        configs = [
            ("ours", ("blazeface", 1, "detector")),
            ("ours", ("blazeface", 1, "full")),
            ("ours", ("blazeface", 5, "full")),
            ("ours", ("haar", 5, "detector")),
            ("ours", ("haar-fer", 5, "detector")),
            ("ours", ("haar-fer", 1, "detector")),
        ]
        py = fer_python(args.fer_python)
        if py:
            configs += [("fer", "tflite"), ("fer", "keras")]
        timed: dict = {c: [] for c in configs}
        for rnd in range(args.rounds):
            for c in configs:
                kind, what = c
                if kind == "ours":
                    r = run_ours(video, fps, what[0], tmp, what[1], what[2])
                else:
                    r = run_fer(py, video, 5, what == "tflite", tmp)
                if r is not None:
                    timed[c].append(r)
                    print(rnd, c, round(r["frames"] / r["wall_s"], 1), flush=True)
        timed = {c: rs for c, rs in timed.items() if rs}

        def label(c) -> str:
            kind, what = c
            if kind == "ours":
                full = " --landmarks full" if what[2] == "full" else ""
                return f"emovid analyze --detector {what[0]} --redetect-every {what[1]}{full}"
            return f"fer Video.analyze ({'TFLite int8' if what == 'tflite' else 'Keras float'})"

        runs = []
        for c, rs in timed.items():
            f_s = [r["frames"] / r["wall_s"] for r in rs]
            runs.append(
                {
                    "pipeline": label(c),
                    "frames": rs[0]["frames"],
                    "frames_with_face": rs[0]["frames_with_face"],
                    "wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
                    "frames_per_s": round(statistics.median(f_s), 1),
                    "frames_per_s_range": f"{min(f_s):.1f}-{max(f_s):.1f}",
                    "cpu_ms_per_frame": round(statistics.median(1000 * r["cpu_s"] / r["frames"] for r in rs), 1),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs)),
                }
            )
        data["throughput"] = {
            "video": f"640x360, 25 fps, {video_s:g} s, analysed at {fps:g} fps",
            "rounds": args.rounds,
            "runs": runs,
        }
        md.append(
            f"**Throughput** on one 640x360 25 fps {video_s:g} s synthetic face video analysed at {fps:g} fps, "
            "threads as the `emovid analyze` command sets them (OpenMP threads yield, one core left to decoding) "
            f"(each pipeline in a fresh process, {args.rounds} interleaved rounds: median and range of frames/s; "
            "peak RSS includes the interpreter and libraries):\n\n" + md_table(runs, [*runs[0].keys()])
        )
        fer_keys = [c for c in timed if c[0] == "fer"]
        if fer_keys:
            comp = []
            for fc in fer_keys:
                for every in (5, 1):
                    oc = ("ours", ("haar-fer", every, "detector"))
                    pairs = list(zip(timed[oc], timed[fc], strict=False))
                    ratios = [(o["frames"] / o["wall_s"]) / (r["frames"] / r["wall_s"]) for o, r in pairs]
                    best = min(r["wall_s"] for r in timed[fc]) / min(o["wall_s"] for o in timed[oc])
                    cpu = [(r["cpu_s"] / r["frames"]) / (o["cpu_s"] / o["frames"]) for o, r in pairs]
                    a = agreement(timed[oc][0], timed[fc][0])
                    comp.append(
                        {
                            "fer model": fc[1],
                            "emovid --redetect-every": every,
                            "speedup": round(statistics.median(ratios), 2),
                            "speedup_range": f"{min(ratios):.2f}-{max(ratios):.2f}",
                            "speedup_best_vs_best": round(best, 2),
                            "cpu_time_ratio": round(statistics.median(cpu), 2),
                            **a,
                        }
                    )
            data["fer_comparison"] = comp
            md.append(
                "**emovid vs fer** (same frames, same detector settings `--detector haar-fer`; speed-up: median and "
                "range of the per-round frames/s ratios, and fastest run vs fastest run; CPU time ratio: fer's CPU "
                "seconds per frame over ours, median over rounds, the figure least moved by other load on a shared "
                "machine; "
                "agreement over frames where both found exactly one face):\n\n"
                + md_table(
                    comp,
                    [
                        "fer model",
                        "emovid --redetect-every",
                        "speedup",
                        "speedup_range",
                        "speedup_best_vs_best",
                        "cpu_time_ratio",
                        "frames_compared",
                        "same_face_presence",
                        "frames_one_face_both",
                        "top_emotion_agreement",
                    ],
                )
            )
        else:
            data["fer_comparison"] = "not installed"
            md.append("**fer package**: not installed here (needs TensorFlow); see bench/analyze.py for how to run it.")

        if not (args.quick or args.skip_hour):
            t0 = time.perf_counter()
            hour = make_hour_video(os.path.join(tmp, "hour.mp4"))
            gen_s = time.perf_counter() - t0
            r = run_ours(hour, args.hour_fps, "haar", tmp, 5)
            data["one_hour"] = {
                "video": "3600 s, 5 fps, 128x128",
                "generate_s": round(gen_s, 1),
                "fps_analyzed": args.hour_fps,
                "frames": r["frames"],
                "wall_s": round(r["wall_s"], 1),
                "rss_after_model_load_mb": round(r["rss_after_load_mb"]),
                "peak_rss_mb": round(r["peak_rss_mb"]),
            }
            print(data["one_hour"], flush=True)
            md.append(
                f"**One hour**: a generated 3600 s 128x128 video analysed at {args.hour_fps:g} fps "
                f"({r['frames']} frames, {r['wall_s']:.0f} s): peak RSS {r['peak_rss_mb']:.0f} MB "
                f"({r['rss_after_load_mb']:.0f} MB after loading the model; goal < 1500 MB)."
            )
    write_results("analyze", data, "\n\n".join(md))


if __name__ == "__main__":
    main()
