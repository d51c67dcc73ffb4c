"""What a new user ran into: FIV2 folders, --folders globs, embeddings behind symlinks, stale failure lists, the
search comparison's columns, piped help, help that speaks of seeds, and load hints in Python terms."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from emovid.cli import main
from emovid.config import TrainConfig
from emovid.errors import ConfigError, InputNotFoundError, ModelError


def _fiv2_folder(root, n=20, dim=8, embed=True):
    """An FIV2-shaped folder: annotation pickles at the top (as `data check fiv2` expects) and embeddings."""
    rng = np.random.default_rng(0)
    keys = [f"yt{i // 2:03d}.{i % 2:03d}.mp4" for i in range(n)]
    names = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
    ann = {t: {k: float(rng.uniform(0.2, 0.8)) for k in keys} for t in names}
    root.mkdir(parents=True, exist_ok=True)
    for split in ("training", "validation"):
        with open(root / f"annotation_{split}.pkl", "wb") as f:
            pickle.dump(ann if split == "training" else {t: {} for t in names}, f, protocol=2)
    if embed:
        (root / "emb" / "train").mkdir(parents=True, exist_ok=True)
        for k in keys:
            torch.save({"emb": torch.randn(30, dim), "length": 30}, root / "emb" / "train" / f"{k[:-4]}.pt")
    return keys


def test_personality_accepts_the_fiv2_folder(tmp_path):
    from emovid.data.readers.fiv2 import training_annotations
    from emovid.tasks.face_sequence import PersonalityTask

    keys = _fiv2_folder(tmp_path / "fiv2")
    task = PersonalityTask(TrainConfig(task="personality", data=str(tmp_path / "fiv2")))
    task.load()
    assert len(task.train_records) + len(task.val_records) == len(keys)
    assert training_annotations(tmp_path / "fiv2") == tmp_path / "fiv2" / "annotation_training.pkl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no annotation_\*\.pkl in this folder"):
        PersonalityTask(TrainConfig(task="personality", data=str(tmp_path / "empty"))).load()


def test_embeddings_behind_symlinks_are_found_and_misses_say_what_was_searched(tmp_path):
    from emovid.tasks.face_sequence import EmbeddingLoader, PersonalityTask

    _fiv2_folder(tmp_path / "fiv2")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "fiv2").symlink_to(tmp_path / "fiv2" / "emb", target_is_directory=True)
    (tmp_path / "root" / "fiv2" / "loop").symlink_to(tmp_path / "root", target_is_directory=True)  # no endless walk
    cfg = TrainConfig(task="personality", data=str(tmp_path / "fiv2"), video_root=str(tmp_path / "root"))
    task = PersonalityTask(cfg)
    task.load()
    assert task.check_inputs(task.all_records()) == []
    assert EmbeddingLoader(tmp_path / "root").path("yt000.000") == tmp_path / "root" / "fiv2" / "train" / "yt000.000.pt"
    # none there: the error names the folder, the file names it wanted and what it found
    (tmp_path / "other").mkdir()
    torch.save({"emb": torch.zeros(30, 8)}, tmp_path / "other" / "unrelated.pt")
    cfg.video_root = str(tmp_path / "other")
    with pytest.raises(ConfigError) as e:
        task.make_backbone()
    msg = str(e.value)
    assert str(tmp_path / "other") in msg and "VIDEO_ID.pt (e.g. yt" in msg and "symlinks followed" in msg
    assert "found 1 .pt files, e.g. unrelated.pt" in msg


def test_a_successful_run_leaves_no_stale_failure_list(tmp_path):
    from emovid.tasks.face_sequence import PersonalityTask
    from emovid.train import preflight, split_note

    _fiv2_folder(tmp_path / "fiv2")
    out = tmp_path / "run"
    out.mkdir()
    (out / "failures.jsonl").write_text('{"video": "from an earlier attempt", "error": "x"}\n')
    cfg = TrainConfig(task="personality", data=str(tmp_path / "fiv2"), video_root=str(tmp_path / "fiv2" / "emb"))
    task = PersonalityTask(cfg)
    task.load()
    assert preflight(task, cfg, out) == [] and not (out / "failures.jsonl").exists()
    assert split_note(task, []) == f"train {len(task.train_records)} videos, val {len(task.val_records)}"
    assert split_note(task, [{}, {}]).endswith("(2 skipped, see failures.jsonl)")


def test_faces_embed_folders_glob_inside_base_path(tmp_path):
    from emovid.faces.embed import find_videos

    for d in ("training80_01", "training80_02", "validation80_01"):
        (tmp_path / d).mkdir()
        (tmp_path / d / f"{d}_clip.mp4").write_bytes(b"not decoded by find_videos")
    found = find_videos(tmp_path, "train", ["training80_*"])
    assert [p.parent.name for p in found] == ["training80_01", "training80_02"]
    assert len(find_videos(tmp_path, "train", ["training80_*", "training80_01", "validation80_01"])) == 3
    with pytest.raises(ConfigError, match=r"--folders 'test80_\*' matches no folder here; check --base_path"):
        find_videos(tmp_path, "train", ["test80_*"])
    with pytest.raises(InputNotFoundError, match="training80_09"):
        find_videos(tmp_path, "train", ["training80_09"])


def test_piped_help_is_plain_complete_and_speaks_of_tasks_not_seeds(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--data, --data-csv, --data_csv" in out and "--allow-size-mismatch, --allow_size_mismatch" in out
    assert "…" not in out and "╭" not in out  # not rich's table cut at 80 columns
    flat = " ".join(out.split())  # wrapped lines
    assert "retrieval (text-video search" in flat and "personality (First Impressions" in flat
    for args in (["train"], ["faces"], ["faces", "embed"], ["extract"], ["analyze"], ["weights", "fetch"]):
        assert main([*args, "--help"]) == 0
        text = capsys.readouterr().out
        assert "seed 00" not in text.lower() and "seed-00" not in text.lower(), args
        assert max(len(line) for line in text.splitlines()) <= 100, args


def test_load_hints_name_the_cli_flag():
    from emovid.models.hub import load_state_dict

    class Small(nn.Module):
        def __init__(self, out: int):
            super().__init__()
            self.a = nn.Linear(2, out)

    sd = Small(3).state_dict()
    with pytest.raises(ModelError, match=r"--allow-size-mismatch skips them"):
        load_state_dict(Small(4), sd)
    sd["extra"] = torch.ones(1)
    with pytest.raises(ModelError, match=r"--allow-size-mismatch loads what matches; strict=False in Python"):
        load_state_dict(Small(3), sd)


def test_weights_fetch_usage_errors_are_one_line(capsys):
    assert main(["weights", "fetch", "no_such_model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("emovid: error: unknown model 'no_such_model'") and "\n" not in err
