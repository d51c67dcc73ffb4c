"""The EmoNeXt recipe's face-embedding export (``get_cmu_mosei_embeddings.py`` / ``get_fiv2_embeddings.py``).

For every video: :func:`emovid.faces.crops.video_face_crops` takes ``num_crops`` (30) evenly spaced frames and the
main face's square crops, a registered face model (EmoNeXt by default) embeds the real crops (its pooled
embedding, :func:`emovid.models.base.pooled`), and ``OUTPUT_ROOT/SPLIT/VIDEO.pt`` receives::

    {"emb": float32 Tensor[num_crops, D],   # rows 0..length-1: the face crops in time order; the rest zero
     "length": int,                         # number of real face crops (0 when no face was ever found)
     "frames": int64 Tensor[num_crops],     # frame index of each row, -1 for padding rows
     "times": float32 Tensor[num_crops]}    # seconds, NaN for padding rows

Samples where the main face was not detected are not invented: they are left out and the sequence is padded with
zero rows at the end (the sequence heads in :mod:`emovid.models.heads` mask all-zero rows). The file loads with
``torch.load(..., weights_only=True)``.

Input folders: ``BASE/F`` for each ``--folders F`` (First Impressions V2's ``training80_01`` ..., or a glob such as
``'training80_*'`` matched inside ``BASE``); otherwise ``BASE/SPLIT`` when it exists (CMU-MOSEI's
``emo_video/train``), else ``BASE`` itself; searched recursively.
Existing outputs are skipped (resume); each file is written atomically; failures go to
``OUTPUT_ROOT/SPLIT/failures.jsonl`` (rewritten each run: failed videos are retried).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emovid.engine import Input, Job
from emovid.errors import ConfigError, InputNotFoundError, display_path
from emovid.faces.detect import DEFAULT_DETECTOR

__all__ = ["RECIPE_FILE", "FaceEmbedder", "embed_video", "embed_videos", "find_recipe", "find_videos"]

#: Written next to the embeddings: ``{"model", "weights", "num_crops", "margin", "detector", "dim"}``.
RECIPE_FILE = "faces_embed.json"


def find_videos(
    base_path: str | os.PathLike,
    split: str,
    folders: Sequence[str] | None = None,
    ignored: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """The videos to embed (see the module notes for the folder rules), sorted.

    Args:
        ignored: if given, receives entries named like videos that are not regular files (never opened).

    Raises:
        InputNotFoundError: ``base_path`` or a named folder does not exist.
        ConfigError: no videos, or two videos would write the same output file.
    """
    from emovid.batch import require_inputs, scan_folder
    from emovid.video import VIDEO_EXTENSIONS

    base = Path(base_path)
    if not base.is_dir():
        raise InputNotFoundError(base, "folder")
    if folders:
        dirs = _expand_folders(base, folders)
    elif (base / split).is_dir():
        dirs = [base / split]
    else:
        dirs = [base]
    seen: dict[str, Path] = {}
    left_out: list[tuple[Path, str]] = []
    for d in dirs:
        scan = scan_folder(d, VIDEO_EXTENSIONS)
        left_out += scan.ignored
        for p in scan.files:
            if p.stem in seen:
                raise ConfigError(
                    f"{display_path(p)}: same output name {display_path(p.stem)}.pt as "
                    f"{display_path(seen[p.stem])}; embed them into different --split folders"
                )
            seen[p.stem] = p
    require_inputs(seen, dirs[0] if len(dirs) == 1 else base, "video files", left_out)
    if ignored is not None:
        ignored.extend(left_out)
    return sorted(seen.values(), key=os.fsencode)


def _expand_folders(base: Path, folders: Sequence[str]) -> list[Path]:
    """``BASE/F`` for each ``F``; a glob (``training80_*``, quoted so the shell leaves it) matches folders of ``BASE``.

    Raises:
        InputNotFoundError: a named folder that does not exist.
        ConfigError: a glob that matches no folder.
    """
    import glob

    dirs: list[Path] = []
    for f in folders:
        if glob.has_magic(f):
            matches = sorted(p for p in base.glob(f) if p.is_dir())
            if not matches:
                raise ConfigError(f"{display_path(base)}: --folders {f!r} matches no folder here; check --base_path")
            dirs += matches
        elif (base / f).is_dir():
            dirs.append(base / f)
        else:
            raise InputNotFoundError(base / f, "folder (from --folders)")
    return list(dict.fromkeys(dirs))  # a folder named twice (by a glob and by name) is read once


def find_recipe(root: str | os.PathLike) -> dict | None:
    """The :data:`RECIPE_FILE` in an embedding folder or its split sub-folders (the first found), or ``None``."""
    import json

    base = Path(root)
    for p in [base / RECIPE_FILE, *sorted(base.glob(f"*/{RECIPE_FILE}"))]:
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except (OSError, ValueError):
                continue
    return None


class FaceEmbedder:
    """A registered face model turning face crops into embeddings.

    Args:
        model: registered model name (``emonext_base``: 1024-d; tiny ``test_emonext`` for tests).
        pretrained: ``True`` = the model's default weights (``None`` for models without any), a tag, a file, a
            folder (``local-dir:PATH``), ``False``/``None`` = random initialisation.
        device: torch device.
    """

    def __init__(self, model: str = "emonext_base", pretrained: str | bool | None = True, device: str = "cpu"):
        from emovid.models import create_model, get_model_entry

        if pretrained is True:
            pretrained = get_model_entry(model).cfg.default_tag or None
        self.model = create_model(model, pretrained=pretrained or None, num_classes=0).eval().to(device)
        cfg = self.model.pretrained_cfg
        self.name = model
        self.weights = str(pretrained) if pretrained else None
        self.device = device
        self.size = int(cfg.input_size[0])
        self.cfg = cfg  # colour, size and normalisation of the crops: emovid.faces.crops.face_tensor
        self.in_chans = int(getattr(cfg, "in_chans", 3) or 3)
        self.dim = int(getattr(self.model, "num_features", 0) or self.embed(np.zeros((1, 8, 8, 3), np.uint8)).shape[1])

    def embed(self, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embeddings ``float32 [N, D]`` of RGB ``uint8 [N, S, S, 3]`` crops (resized to the model's input)."""
        import torch

        from emovid.faces.crops import face_tensor
        from emovid.models.base import pooled

        if len(crops) == 0:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        x = face_tensor(crops, self.cfg)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                outs.append(pooled(self.model, x[i : i + batch_size].to(self.device)).float().cpu())
        return torch.cat(outs).numpy()


def embed_video(
    path: str | os.PathLike,
    embedder: FaceEmbedder,
    num_crops: int = 30,
    margin: float = 0.2,
    detector=None,
    batch_size: int = 32,
) -> dict:
    """One video's record in the ``VIDEO.pt`` layout of the module notes (tensors, zero-padded to ``num_crops``).

    Raises:
        emovid.errors.VideoError: the file cannot be decoded.
    """
    import torch

    from emovid.faces.crops import video_face_crops

    fc = video_face_crops(path, num_crops=num_crops, size=embedder.size, margin=margin, detector=detector)
    emb = np.zeros((num_crops, embedder.dim), np.float32)
    real = fc.face_crops()
    n = len(real)
    if n:
        emb[:n] = embedder.embed(real, batch_size)
    frames = np.full(num_crops, -1, np.int64)
    times = np.full(num_crops, np.nan, np.float32)
    frames[:n] = fc.frame_indices[fc.has_face]
    times[:n] = fc.times[fc.has_face]
    record = {
        "emb": torch.from_numpy(emb),
        "length": int(n),
        "frames": torch.from_numpy(frames),
        "times": torch.from_numpy(times),
    }
    if fc.damage:
        record["damaged"] = fc.damage  # plain data: the file still loads with weights_only=True
    return record


class FacesEmbedJob(Job):
    """``emovid faces embed`` on the batch engine: one video = one ``VIDEO.pt`` (see the module notes)."""

    name = "faces embed"
    key = "video"
    guard = ("model", "num_crops", "margin", "detector")

    def __init__(self, model: str, pretrained, num_crops: int, margin: float, detector, batch_size: int, out: Path):
        self.model, self.pretrained = model, pretrained
        self.num_crops, self.margin, self.detector_spec, self.batch_size = num_crops, margin, detector, batch_size
        self.out = Path(out)
        self.embedder: FaceEmbedder | None = None
        self.detector = None

    def settings(self) -> dict:
        det = self.detector_spec if isinstance(self.detector_spec, str) else getattr(self.detector_spec, "name", "?")
        return {"model": self.model, "num_crops": self.num_crops, "margin": self.margin, "detector": det}

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return (self.out / f"{item.path.stem}.pt").exists()

    def setup(self, device) -> None:
        from emovid.faces.detect import create_detector, detector_device

        self.embedder = FaceEmbedder(self.model, self.pretrained, str(device))
        self.detector = create_detector(self.detector_spec, **detector_device(self.detector_spec, device))

    def process(self, item: Input, loaded) -> dict:
        assert self.embedder is not None
        return embed_video(
            item.path, self.embedder, self.num_crops, margin=self.margin, detector=self.detector,
            batch_size=self.batch_size,
        )  # fmt: skip

    def write(self, item: Input, result: dict, out: Path) -> dict:
        import torch

        from emovid.utils.io import atomic_path

        with atomic_path(out / f"{item.path.stem}.pt") as tmp:
            torch.save(result, tmp)
        return {"input": str(item.path), "output": f"{item.path.stem}.pt", "length": int(result["length"])}

    def finish(self, out: Path, manifest: dict, failures: dict) -> None:
        from emovid.utils.io import write_json

        e = self.embedder
        if e is None:  # nothing was embedded in this run: the recipe of the earlier one stands
            return
        # How the files were made: trained heads record it, so `emovid analyze --checkpoint` embeds new videos alike.
        weights = os.path.abspath(e.weights) if e.weights and os.path.isfile(e.weights) else e.weights
        write_json(out / RECIPE_FILE, {**self.settings(), "weights": weights, "dim": int(e.dim)})


def embed_videos(
    split: str,
    base_path: str | os.PathLike,
    output_root: str | os.PathLike,
    folders: Sequence[str] | None = None,
    model: str = "emonext_base",
    pretrained: str | bool | None = True,
    num_crops: int = 30,
    margin: float = 0.2,
    detector: str = DEFAULT_DETECTOR,
    batch_size: int = 32,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    log=None,
    strict: bool = False,
    engine_options: dict | None = None,
) -> dict:
    """Write ``OUTPUT_ROOT/SPLIT/VIDEO.pt`` for every video (see the module notes), on the shared batch engine.

    Args:
        engine_options: extra :func:`emovid.engine.run` options (``devices``, ``num_nodes``, ``strategy``, ...).

    Returns:
        ``{"videos", "done", "skipped", "failed", "no_face", "dim", "model", "output_dir", "failures", "recorder"}``.
    """
    from emovid.engine import device_options, read_manifest
    from emovid.engine import run as run_batch

    if num_crops < 1:
        raise ConfigError(f"--num-crops must be at least 1, got {num_crops}")
    if not split or "/" in split or split in (".", ".."):
        raise ConfigError(f"--split must be a plain folder name such as train, got {split!r}")
    ignored: list[tuple[Path, str]] = []
    videos = find_videos(base_path, split, folders, ignored)
    out = Path(output_root) / split
    job = FacesEmbedJob(model, pretrained, int(num_crops), float(margin), detector, batch_size, out)
    base = Path(base_path)
    inputs = [Input(v.relative_to(base).as_posix() if v.is_relative_to(base) else str(v), v) for v in videos]
    rec = run_batch(
        job,
        inputs,
        out,
        overwrite=overwrite,
        strict=strict,
        ignored=ignored,
        progress=progress,
        **{**device_options(device), **(engine_options or {})},
    )
    manifest = read_manifest(out)
    finished = [manifest[i.id] for i in inputs if i.id in manifest]
    dim = job.embedder.dim if job.embedder else None
    if dim is None and (out / RECIPE_FILE).exists():
        dim = (find_recipe(out) or {}).get("dim")
    return {
        **rec.to_dict(),
        "videos": len(videos),
        "no_face": sum(1 for e in finished if e.get("length") == 0),  # over every finished video
        "dim": dim,
        "model": model,
        "output_dir": str(out),
        "recorder": rec,
    }
