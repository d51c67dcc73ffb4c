"""The labels of a synthetic video in every format's terms, and the label files :func:`~emovid.data.synth.generate`
writes (one ``write_*`` per format; the formulas are in :mod:`emovid.data.synth`'s docstring)."""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.readers.mosei import MOSEI_EMOTIONS
from emovid.data.readers.vce import VCE_EMOTIONS
from emovid.data.synth.latent import Latent
from emovid.utils.io import atomic_open, atomic_path, write_json

#: VCE emotion weights per category (scaled by intensity).
VCE_PROTOTYPES: dict[str, dict[str, float]] = {
    "angry": {"Anger": 0.9, "Disgust": 0.3, "Anxiety": 0.2},
    "disgust": {"Disgust": 0.9, "Horror": 0.3, "Anger": 0.2, "Awkwardness": 0.2},
    "fear": {"Fear": 0.9, "Horror": 0.6, "Anxiety": 0.5, "Surprise": 0.2},
    "happy": {"Joy": 0.9, "Amusement": 0.7, "Satisfaction": 0.4, "Adoration": 0.3, "Admiration": 0.2},
    "sad": {"Sadness": 0.9, "Empathic Pain": 0.6, "Nostalgia": 0.3, "Boredom": 0.2},
    "surprise": {"Surprise": 0.9, "Awe (or Wonder)": 0.6, "Interest": 0.4, "Excitement": 0.3, "Confusion": 0.3},
    "neutral": {"Calmness": 0.6, "Boredom": 0.3, "Interest": 0.2, "Entrancement": 0.2},
}
HIGH_AROUSAL = {"Excitement": 0.5, "Anxiety": 0.2}
LOW_AROUSAL = {"Calmness": 0.5, "Boredom": 0.3, "Relief": 0.2}
POSITIVE = {"Satisfaction": 0.3, "Aesthetic Appreciation": 0.3, "Relief": 0.2, "Romance": 0.1}
NEGATIVE = {"Empathic Pain": 0.2, "Confusion": 0.2, "Awkwardness": 0.2}

#: FER class → MOSEI emotion, and the MOSEI emotion that co-occurs with it.
FER_TO_MOSEI = dict(angry="anger", disgust="disgust", fear="fear", happy="happy", sad="sad", surprise="surprise")
MOSEI_SECONDARY = dict(
    anger="disgust", disgust="anger", fear="surprise", happy="surprise", sad="fear", surprise="happy"
)
#: OCEAN weights on (valence, arousal, 2 intensity - 1), :data:`FIV2_TRAITS` order.
TRAIT_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "openness": (0.15, 0.35, 0.3),
    "conscientiousness": (0.25, -0.35, -0.2),
    "extraversion": (0.35, 0.4, 0.1),
    "agreeableness": (0.55, -0.1, 0.0),
    "neuroticism": (-0.45, 0.3, 0.15),
}
#: Plutchik emotions counted in captions per category (primary first).
PLUTCHIK_MAP = dict(
    angry=("anger", "disgust"),
    disgust=("disgust", "anger"),
    fear=("fear", "surprise"),
    happy=("joy", "trust", "anticipation"),
    sad=("sadness",),
    surprise=("surprise", "anticipation"),
    neutral=(),
)
_WORDS = dict(
    angry=("angry", "furious face frowning"),
    disgust=("disgusted", "face wrinkling in disgust"),
    fear=("afraid", "frightened face staring"),
    happy=("happy", "joyful face grinning"),
    sad=("sad", "gloomy face sulking"),
    surprise=("surprised", "astonished face gasping"),
    neutral=("calm", "neutral face resting"),
)


def vce_emotions(lat: Latent) -> tuple[float, ...]:
    """The 27 VCE intensities of a video (see the module docstring)."""
    name = lat.emotion_name
    w = (1 - lat.intensity) / max(lat.intensity, 1e-6) if name == "neutral" else 1.0
    terms = [
        (w * lat.intensity, VCE_PROTOTYPES[name]),
        (0.3 * max(lat.arousal, 0.0), HIGH_AROUSAL),
        (0.3 * max(-lat.arousal, 0.0), LOW_AROUSAL),
        (0.2 * max(lat.valence, 0.0), POSITIVE),
        (0.2 * max(-lat.valence, 0.0), NEGATIVE),
    ]
    out = []
    for emo in VCE_EMOTIONS:
        x = sum(scale * table.get(emo, 0.0) for scale, table in terms)
        out.append(round(min(max(x, 0.0), 1.0) * 120) / 120)
    return tuple(out)


def mosei_intensities(lat: Latent) -> tuple[float, ...]:
    """Six MOSEI intensities (thirds in [0, 3]) of a video; all zero for neutral."""
    out = dict.fromkeys(MOSEI_EMOTIONS, 0.0)
    if lat.emotion_name != "neutral":
        primary = min(9, max(1, math.ceil(9 * lat.intensity - 1e-9)))
        name = FER_TO_MOSEI[lat.emotion_name]
        out[name] = primary / 3
        out[MOSEI_SECONDARY[name]] = math.floor(0.4 * primary) / 3
    return tuple(round(out[e], 6) for e in MOSEI_EMOTIONS)


def ocean_traits(lat: Latent) -> tuple[float, ...]:
    """OCEAN traits in [0, 1], :data:`FIV2_TRAITS` order."""
    x = (lat.valence, lat.arousal, 2 * lat.intensity - 1)
    out = []
    for t in FIV2_TRAITS:
        w = TRAIT_WEIGHTS[t]
        out.append(round(float(np.clip(0.5 + 0.5 * sum(a * b for a, b in zip(w, x, strict=False)), 0, 1)), 6))
    return tuple(out)


def _plutchik(lat: Latent) -> tuple[float, ...]:
    names = PLUTCHIK_MAP[lat.emotion_name]
    counts = dict.fromkeys(PLUTCHIK_EMOTIONS, 0.0)
    for rank, n in enumerate(names):
        counts[n] = float(max(1, 1 + round(3 * lat.intensity) - rank))
    return tuple(counts[e] for e in PLUTCHIK_EMOTIONS)


def _captions(lat: Latent) -> list[str]:
    adj, phrase = _WORDS[lat.emotion_name]
    adverb = "slightly" if lat.intensity < 0.4 else "clearly" if lat.intensity < 0.75 else "extremely"
    pace = "still" if lat.arousal < -0.3 else "moving" if lat.arousal < 0.3 else "bouncing energetically"
    article = "an" if phrase[0] in "aeiou" else "a"
    return [f"a cartoon person looking {adverb} {adj}, {pace}", f"{article} {phrase} while the head keeps {pace}"]


def _v2v_comparisons(seed: int, split_of: dict[str, str], ids: list[str], val: dict[str, float]) -> dict[str, list]:
    rng = np.random.default_rng([int(seed), 2**20])
    out: dict[str, list] = {}
    for split, group in (("train", "train"), ("test", "test")):
        members = [v for v in ids if split_of[v] == group]
        seen, comps = set(), []
        for a in members:
            others = [b for b in members if b != a]
            for b in rng.permutation(others)[:3] if others else []:
                b = str(b)
                if abs(val[a] - val[b]) < 0.1 or frozenset((a, b)) in seen:
                    continue
                seen.add(frozenset((a, b)))
                comps.append(sorted((a, b), key=lambda x: val[x]))
        out[split] = comps
    members = [str(v) for v in rng.permutation([v for v in ids if split_of[v] == "val"])]
    lists, i = [], 0
    while len(members) - i >= 2:
        k = int(rng.integers(2, 5))
        k = min(k, len(members) - i)
        if len(members) - i - k == 1:
            k = k - 1 if k > 2 else k + 1  # never leave a single video behind
        chunk = members[i : i + k]
        i += k
        lists.append(sorted(chunk, key=lambda x: val[x]))
    out["listwise"] = lists
    return out


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _fmt(x: float) -> float:
    return round(float(x), 6)


# ---- label files, one writer per format ---------------------------------------------------------------------


def write_intensity(out: Path, ids: list[str], by_id: dict[str, Latent]) -> dict:
    """``intensity.csv``: ``video_path,intensity_score`` (video root: ``out``)."""
    rows = [[f"videos/{v}.mp4", f"{by_id[v].intensity:.6f}"] for v in ids]
    _write_text(out / "intensity.csv", _csv_text(["video_path", "intensity_score"], rows))
    return {"path": "intensity.csv", "video_root": "."}


def write_video_metadata(out: Path, ids: list[str], n_frames: int, fps: int, size: int, render: bool) -> None:
    """``vce/metadata.json`` and ``v2v/metadata.json`` (the same file) and, for rendered videos, their hard links."""
    meta = {
        v: {
            "codec_name": "h264",
            "duration": f"{n_frames / fps:.6f}",
            "file": f"videos/{v}.mp4",
            "frame_rate": f"{fps}/1",
            "height": size,
            "number_of_frames": str(n_frames),
            "width": size,
        }
        for v in ids
    }
    for sub in ("vce", "v2v"):
        write_json(out / sub / "metadata.json", meta)
        if render:
            for v in ids:
                _link(out / "videos" / f"{v}.mp4", out / sub / "videos" / f"{v}.mp4")


def write_vce(
    out: Path, ids: list[str], by_id: dict[str, Latent], split_of: dict[str, str], test_ids: list[str]
) -> dict:
    """``vce/{train,test}_labels.json``: train holds the train and val videos, test ``test_ids`` in their order."""
    for split, members in (("train", [v for v in ids if split_of[v] != "test"]), ("test", test_ids)):
        labels = {}
        for v in members:
            emo = vce_emotions(by_id[v])
            order = sorted(range(len(emo)), key=lambda j: (-emo[j], j))[:3]
            labels[v] = {
                "emotions": dict(zip(VCE_EMOTIONS, emo, strict=False)),
                "file": f"videos/{v}.mp4",
                "topK": [VCE_EMOTIONS[j] for j in order],
            }
        write_json(out / "vce" / f"{split}_labels.json", labels)
    return {"path": "vce", "splits": ["train", "test"]}


def write_v2v(out: Path, seed: int, ids: list[str], split_of: dict[str, str], mean_val: dict[str, float]) -> dict:
    """``v2v/{train,test,listwise}_labels.json``: comparisons by mean rendered valence."""
    v2v = _v2v_comparisons(seed, split_of, ids, mean_val)
    for split, comps in v2v.items():
        write_json(out / "v2v" / f"{split}_labels.json", {"comparisons": comps})
    return {"path": "v2v", "splits": list(v2v)}


def write_mosei(out: Path, ids: list[str], by_id: dict[str, Latent], split_of: dict[str, str]) -> dict:
    """``mosei.csv``: ``video_id``, the six intensities and the split (``val`` is MOSEI's ``dev``)."""
    mosei_split = {"train": "train", "val": "dev", "test": "test"}
    rows = [[v, *(f"{x:.6f}" for x in mosei_intensities(by_id[v])), mosei_split[split_of[v]]] for v in ids]
    _write_text(out / "mosei.csv", _csv_text(["video_id", *MOSEI_EMOTIONS, "split"], rows))
    return {"path": "mosei.csv", "video_root": "videos"}


def write_fiv2(
    out: Path, ids: list[str], by_id: dict[str, Latent], split_of: dict[str, str], render: bool
) -> tuple[dict, dict[str, str]]:
    """FIV2's annotation pickles and its 75-folder video layout (hard links of rendered videos).

    Returns:
        The format's manifest entry, and each video's FIV2 path (relative to ``out``).
    """
    fiv2_names = {"train": ("training", "annotation_training.pkl"), "val": ("validation", "annotation_validation.pkl")}
    fiv2_names["test"] = ("test", "annotation_test.pkl")
    fiv2_files = {}
    for split, (prefix, pkl) in fiv2_names.items():
        members = [v for v in ids if split_of[v] == split]
        ann: dict[str, dict[str, float]] = {t: {} for t in ("extraversion", "neuroticism", "agreeableness")}
        ann.update({"conscientiousness": {}, "interview": {}, "openness": {}})
        for j, v in enumerate(members):
            key = f"{v}.000.mp4"
            traits = dict(zip(FIV2_TRAITS, ocean_traits(by_id[v]), strict=False))
            for t, x in traits.items():
                ann[t][key] = x
            ann["interview"][key] = round((traits["extraversion"] + traits["agreeableness"]) / 2, 6)
            folder = f"{prefix}80_{j % 25 + 1:02d}"
            fiv2_files[v] = f"fiv2/{folder}/{key}"
            if render:
                _link(out / "videos" / f"{v}.mp4", out / fiv2_files[v])
        with atomic_path(out / "fiv2" / pkl) as tmp:
            tmp.write_bytes(pickle.dumps(ann, protocol=2))
    entry = {"path": "fiv2", "files": [f[1] for f in fiv2_names.values()], "video_dirs": ["fiv2"]}
    return entry, fiv2_files


def write_va(out: Path, ids: list[str], trajs: dict[str, dict[str, np.ndarray]], n_frames: int) -> dict:
    """``va.csv``: SEWA-style valence and arousal of every frame, as rendered."""
    rows = []
    for v in ids:
        tr = trajs[v]
        for k in range(n_frames):
            rows.append([v, f"{tr['time'][k]:.4f}", f"{tr['valence'][k]:.4f}", f"{tr['arousal'][k]:.4f}"])
    _write_text(out / "va.csv", _csv_text(["video", "time", "valence", "arousal"], rows))
    return {"path": "va.csv", "video_root": "videos"}


def write_captions(
    out: Path, ids: list[str], by_id: dict[str, Latent], split_of: dict[str, str], duration: float
) -> tuple[dict, dict]:
    """``captions.json`` (emotion-caption emotion records) and ``msrvtt_captions.{csv,json}`` (MSR-VTT style).

    Returns:
        The manifest entries of the two formats (``captions``, ``msrvtt``).
    """
    caps = []
    msr_rows, msr_sent = [], []
    for v in ids:
        lat = by_id[v]
        plut = _plutchik(lat)
        texts = _captions(lat)
        pos = float(round(1 + 3 * lat.valence)) if lat.valence > 0.2 else 0.0
        neg = float(round(1 - 3 * lat.valence)) if lat.valence < -0.2 else 0.0
        rec = {"video": f"{v}.mp4", "video_id": v, "caption": texts[0], "duration": _fmt(duration)}
        rec.update({"emotion": int(any(plut)), "positive": pos, "negative": neg, "neutral": 0.0 if pos or neg else 1.0})
        rec.update(dict(zip(PLUTCHIK_EMOTIONS, plut, strict=False)))
        caps.append(rec)
        for t in texts:
            msr_rows.append([v, t])
            msr_sent.append({"caption": t, "video_id": v, "sen_id": len(msr_sent)})
    write_json(out / "captions.json", caps)
    _write_text(out / "msrvtt_captions.csv", _csv_text(["video_id", "sentence"], msr_rows))
    msr_videos = [{"video_id": v, "split": split_of[v]} for v in ids]
    write_json(out / "msrvtt_captions.json", {"videos": msr_videos, "sentences": msr_sent})
    captions = {"path": "captions.json", "video_root": "videos"}
    return captions, {"path": "msrvtt_captions.csv", "video_root": "videos", "json": "msrvtt_captions.json"}
