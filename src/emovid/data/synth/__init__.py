"""Labelled synthetic videos of drawn faces, with labels in every supported format.

Each video shows one cartoon face (skin-coloured ellipse head, hair, shaded eye sockets, eyes, brows, nose,
mouth, cheeks) whose appearance is a known function of per-video latent labels:

========================  =================================================================================
label                     what it changes in the picture
========================  =================================================================================
valence ``v(t)``          mouth curvature: the mouth corners rise by ``0.22 u v(t)`` above the centre
                          (``u`` = face half-width), so +1 is a broad smile, -1 a frown
arousal ``a(t)``          head motion: bob/shake amplitude ``(0.015 + 0.085 a01) S`` and frequency
                          ``0.4 + 2.2 a01`` Hz (``a01 = (a + 1) / 2``, ``S`` = frame size), and cheek blush
                          opacity ``0.75 a01``
intensity ``i``           exaggeration ``e(t) = i (0.85 + 0.15 sin(2π 0.6 t + φ))``: mouth openness
                          ``0.05 + 0.95 e``, brow bounce ``0.08 e sin(2π t)``, and how far the category
                          shape is pushed (``0.45 + 0.55 e`` of :data:`PROTOTYPES`)
emotion category          brow inner/outer height and asymmetry, eye openness and asymmetry, mouth width and
                          tilt, per :data:`PROTOTYPES` (7 FER classes, :data:`FER_CLASSES` order)
========================  =================================================================================

Nuisance factors vary mildly and independently: face position (±8 % of the frame) and scale (0.9–1.1), skin
tone, a two-colour background gradient, head-motion direction and phase.

Latents per video (drawn from ``np.random.default_rng([seed, index])``, so the first videos do not depend on
how many are made): category uniform over 7; intensity ``U(0.2, 1)`` (neutral: ``U(0, 0.3)``); mean valence
``clip(CLASS_VALENCE[c] (0.35 + 0.65 i) + U(-0.35, 0.35))``; mean arousal likewise with
:data:`CLASS_AROUSAL` and ``U(-0.45, 0.45)``; per-frame valence/arousal add a slow sinusoid (±0.15).

Labels derived from the latents (all written by :func:`generate`):

* intensity CSV: ``intensity_score = i``.
* VCE: ``emotion_k = clip(w_c i P[c][k] + 0.3 max(a,0) HIGH_AROUSAL[k] + 0.3 max(-a,0) LOW_AROUSAL[k]
  + 0.2 max(v,0) POSITIVE[k] + 0.2 max(-v,0) NEGATIVE[k], 0, 1)`` rounded to 1/120 (VCE's rating grid), with
  ``w_c = 1`` except ``w_neutral = (1 - i) / i`` (neutral prototypes fade with intensity); :data:`VCE_PROTOTYPES`.
* V2V: preference by mean rendered valence; pairwise train/test comparisons skip near ties (< 0.1).
* MOSEI: the category's emotion gets ``p / 3`` with ``p = clip(ceil(9 i), 1, 9)`` (thirds, 1/3–3), its
  :data:`MOSEI_SECONDARY` partner ``floor(0.4 p) / 3``; neutral videos are all zero.
* FIV2: OCEAN traits ``clip(0.5 + 0.5 W · [v, a, 2i - 1], 0, 1)`` with :data:`TRAIT_WEIGHTS`.
* SEWA-style VA: the per-frame ``v(t)``, ``a(t)`` actually rendered.
* captions: templates naming the emotion (adverb by intensity) with Plutchik counts from :data:`PLUTCHIK_MAP`.

Layout of ``OUT_DIR`` (also described in ``synth_manifest.json``)::

    videos/00000.mp4 ...                       H.264 yuv420p, S×S, ``fps``, ``seconds`` long
    intensity.csv                              video_path,intensity_score     (video root: OUT_DIR)
    vce/{metadata,train_labels,test_labels}.json + vce/videos/ (hard links)
    v2v/{metadata,train_labels,test_labels,listwise_labels}.json + v2v/videos/ (hard links)
    mosei.csv                                  video_id,happy,...,fear,split   (video root: videos/)
    fiv2/annotation_{training,validation,test}.pkl + fiv2/{training,validation,test}80_NN/ID.000.mp4
    va.csv                                     video,time,valence,arousal      (video root: videos/)
    captions.json                              emotion-caption emotion captions       (video root: videos/)
    msrvtt_captions.csv, msrvtt_captions.json  MSR-VTT-style captions          (video root: videos/)
    synth_manifest.json

Hard links (copies where the file system refuses) keep each dataset folder self-contained at no cost.
Every split is by video: ``test`` 20 %, then ``val`` 20 % of the rest, the remainder ``train``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.readers.mosei import FER_CLASSES
from emovid.data.splits import split_ids
from emovid.data.synth.draw import PROTOTYPES, _render_job, render_frame, render_video
from emovid.data.synth.draw import background as background
from emovid.data.synth.labels import FER_TO_MOSEI as FER_TO_MOSEI
from emovid.data.synth.labels import HIGH_AROUSAL as HIGH_AROUSAL
from emovid.data.synth.labels import LOW_AROUSAL as LOW_AROUSAL
from emovid.data.synth.labels import MOSEI_SECONDARY as MOSEI_SECONDARY
from emovid.data.synth.labels import NEGATIVE as NEGATIVE
from emovid.data.synth.labels import PLUTCHIK_MAP as PLUTCHIK_MAP
from emovid.data.synth.labels import POSITIVE as POSITIVE
from emovid.data.synth.labels import (
    TRAIT_WEIGHTS,
    VCE_PROTOTYPES,
    _fmt,
    mosei_intensities,
    ocean_traits,
    vce_emotions,
    write_captions,
    write_fiv2,
    write_intensity,
    write_mosei,
    write_v2v,
    write_va,
    write_vce,
    write_video_metadata,
)
from emovid.data.synth.latent import CLASS_AROUSAL, CLASS_VALENCE, Latent, sample_latent, trajectories
from emovid.utils.io import write_json

SYNTH_VERSION = 1


def generate(
    out_dir: str | os.PathLike,
    num_videos: int = 200,
    seed: int = 0,
    size: int = 112,
    fps: int = 15,
    seconds: float = 3.0,
    workers: int | None = None,
    render: bool = True,
) -> dict:
    """Render ``num_videos`` labelled face videos into ``out_dir`` and write labels in every format.

    Args:
        out_dir: output folder (created; existing files of the same names are replaced).
        num_videos: how many videos.
        seed: everything (latents, splits, comparisons) follows from it; label files are byte-identical for
            the same arguments.
        size: frame height and width in pixels (even, ≥ 64).
        fps: frame rate.
        seconds: duration of each video.
        workers: render processes; ``None`` = CPU count, ``0``/``1`` = in this process.
        render: ``False`` writes only the labels (the formats' video paths then point at absent files).

    Returns:
        The manifest (also written to ``synth_manifest.json``).
    """
    if num_videos < 1:
        raise ValueError("num_videos must be >= 1")
    if size < 64 or size % 2:
        raise ValueError("size must be an even number >= 64")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * fps))
    lats = [sample_latent(seed, i) for i in range(num_videos)]
    ids = [lat.video_id for lat in lats]
    trajs = {lat.video_id: trajectories(lat, n_frames, fps) for lat in lats}

    if render:
        jobs = [(lat, out / "videos" / f"{lat.video_id}.mp4", size, fps, seconds) for lat in lats]
        n_workers = (os.cpu_count() or 1) if workers is None else workers
        n_workers = min(n_workers, num_videos)
        if n_workers <= 1:
            for job in jobs:
                _render_job(job)
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(n_workers) as pool:
                list(pool.map(_render_job, jobs, chunksize=max(1, len(jobs) // (4 * n_workers))))

    # Splits by video: test 20 %, val 20 % of the rest, train the remainder.
    s1 = split_ids(ids, 0.2, seed)
    s2 = split_ids(s1.train, 0.2, seed + 1)
    split_of = {**dict.fromkeys(s2.train, "train"), **dict.fromkeys(s2.val, "val"), **dict.fromkeys(s1.val, "test")}
    mean_val = {v: float(trajs[v]["valence"].mean()) for v in ids}
    by_id = {lat.video_id: lat for lat in lats}
    formats: dict[str, dict] = {"intensity": write_intensity(out, ids, by_id)}
    write_video_metadata(out, ids, n_frames, fps, size, render)  # VCE and V2V share metadata.json
    formats["vce"] = write_vce(out, ids, by_id, split_of, s1.val)
    formats["v2v"] = write_v2v(out, seed, ids, split_of, mean_val)
    formats["mosei"] = write_mosei(out, ids, by_id, split_of)
    formats["fiv2"], fiv2_files = write_fiv2(out, ids, by_id, split_of, render)
    formats["va"] = write_va(out, ids, trajs, n_frames)
    formats["captions"], formats["msrvtt"] = write_captions(out, ids, by_id, split_of, n_frames / fps)

    videos = []
    for lat in lats:
        v = lat.video_id
        d = asdict(lat)
        videos.append(
            {
                "video_id": v,
                "file": f"videos/{v}.mp4",
                "split": split_of[v],
                "emotion": lat.emotion,
                "emotion_name": lat.emotion_name,
                "intensity": _fmt(lat.intensity),
                "valence": _fmt(lat.valence),
                "arousal": _fmt(lat.arousal),
                "valence_rendered_mean": _fmt(mean_val[v]),
                "arousal_rendered_mean": _fmt(trajs[v]["arousal"].mean()),
                "traits": dict(zip(FIV2_TRAITS, ocean_traits(lat), strict=False)),
                "fiv2_file": fiv2_files[v],
                "nuisance": {
                    k: (
                        [_fmt(x) for x in d[k]]
                        if isinstance(d[k], (tuple, list))
                        else _fmt(d[k])
                        if isinstance(d[k], float)
                        else d[k]
                    )
                    for k in ("scale", "dx", "dy", "skin", "bg_top", "bg_bottom", "motion", "phase")
                },
            }
        )
    manifest = {
        "generator": "emovid.data.synth",
        "version": SYNTH_VERSION,
        "seed": seed,
        "num_videos": num_videos,
        "size": size,
        "fps": fps,
        "seconds": seconds,
        "num_frames": n_frames,
        "rendered": render,
        "emotion_classes": list(FER_CLASSES),
        "formats": formats,
        "videos": videos,
    }
    write_json(out / "synth_manifest.json", manifest)
    _make_readable(out)
    return manifest


def _make_readable(out: Path) -> None:
    # Atomic writes start from private temporary files (mode 0600); datasets are meant to be shared.
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for p in out.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, mode)


__all__ = [
    "CLASS_AROUSAL",
    "CLASS_VALENCE",
    "PROTOTYPES",
    "TRAIT_WEIGHTS",
    "VCE_PROTOTYPES",
    "Latent",
    "generate",
    "mosei_intensities",
    "ocean_traits",
    "render_frame",
    "render_video",
    "sample_latent",
    "trajectories",
    "vce_emotions",
]
