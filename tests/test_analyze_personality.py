"""`emovid analyze --checkpoint`: EmoNeXt-sequence traits for a new video, embedded like the training data."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from emovid.config import TrainConfig
from emovid.data.readers.fiv2 import FIV2_TRAITS
from emovid.data.synth import render_video, sample_latent

IDS = [f"yt{i // 2:03d}.{i % 2:03d}" for i in range(10)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Videos -> `faces embed` (tiny EmoNeXt, weights from a file) -> emotion, personality and fusion runs."""
    from safetensors.torch import save_file

    from emovid.faces.embed import embed_videos
    from emovid.models import create_model
    from emovid.train import train

    root = tmp_path_factory.mktemp("personality")
    for i, vid in enumerate(IDS):
        render_video(sample_latent(3, i), root / "videos" / "train" / f"{vid}.mp4", size=96, fps=10, seconds=1.0)
    torch.manual_seed(0)
    save_file(create_model("test_emonext", num_classes=0).state_dict(), str(root / "face.safetensors"))
    s = embed_videos(
        "train",
        root / "videos",
        root / "emb",
        model="test_emonext",
        pretrained=str(root / "face.safetensors"),
        num_crops=6,
        progress=False,
    )
    assert s["done"] == len(IDS) and s["dim"] == 64
    rng = np.random.default_rng(0)
    ann = {t: {f"{v}.mp4": float(rng.uniform(0.2, 0.8)) for v in IDS} for t in FIV2_TRAITS}
    with open(root / "fiv2.pkl", "wb") as f:
        pickle.dump(ann, f)
    rows = ["video_id,happy,sad,anger,surprise,disgust,fear"] + [
        f"{v},{i % 3},1,0,0,0,{i % 2}" for i, v in enumerate(IDS)
    ]
    (root / "mosei.csv").write_text("\n".join(rows) + "\n")
    common = dict(video_root=str(root / "emb"), epochs=1, batch_size=4, num_workers=0, progress_bar=False)
    train(TrainConfig(task="emotion_dist", data=str(root / "mosei.csv"), output_dir=str(root / "e"), **common))
    train(TrainConfig(task="personality", data=str(root / "fiv2.pkl"), output_dir=str(root / "p"), **common))
    train(
        TrainConfig(
            task="fusion",
            data=str(root / "mosei.csv"),
            data2=str(root / "fiv2.pkl"),
            emotion_checkpoint=str(root / "e"),
            personality_checkpoint=str(root / "p"),
            output_dir=str(root / "f"),
            **common,
        )
    )
    return root


def test_embedding_recipe_is_written_and_kept_by_training(trained):
    from emovid.train import load_model_dir

    recipe = json.loads((trained / "emb" / "train" / "faces_embed.json").read_text())
    assert recipe["model"] == "test_emonext" and recipe["num_crops"] == 6 and recipe["dim"] == 64
    assert recipe["weights"] == str(trained / "face.safetensors")
    for run in ("e", "p", "f"):
        kept = load_model_dir(trained / run)[1].model_args["face_embedder"]
        assert kept["model"] == "test_emonext" and kept["num_crops"] == 6


@pytest.mark.parametrize("run", ["f", "p"])
def test_analyze_reports_traits_matching_the_training_embeddings(trained, run, tmp_path):
    from emovid.analyze import AnalyzeOptions, analyze_inputs
    from emovid.tasks.face_sequence import FacePersonalityPredictor

    video = trained / "videos" / "train" / f"{IDS[3]}.mp4"
    out = analyze_inputs([video], tmp_path, checkpoint=trained / run, options=AnalyzeOptions(progress=False))
    traits = out["results"][0]["personality"]
    assert list(traits) == list(FIV2_TRAITS) and all(0.0 <= v <= 1.0 for v in traits.values())
    saved = json.loads((tmp_path / f"{IDS[3]}.json").read_text())["summary"]["personality"]
    assert saved == traits
    # Re-embedding the video with the recorded recipe reproduces the training file, hence the same traits.
    pred = FacePersonalityPredictor(trained / run)
    emb = torch.load(trained / "emb" / "train" / f"{IDS[3]}.pt", weights_only=True)["emb"]
    assert pred.predict_embeddings(emb) == pytest.approx(traits, abs=1e-4)


def test_image_input_and_faceless_video_give_no_traits(trained, tmp_path):
    import cv2

    from emovid.analyze import AnalyzeOptions, analyze_inputs
    from emovid.video import write_video

    write_video(tmp_path / "in" / "empty.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 10, fps=10)
    frame = np.zeros((96, 96, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "in" / "still.png"), frame)
    out = analyze_inputs(
        [tmp_path / "in"], tmp_path / "o", checkpoint=trained / "p", options=AnalyzeOptions(progress=False)
    )
    assert out["done"] == 2 and all(r["personality"] is None for r in out["results"])


def test_checkpoint_without_recipe_is_a_clear_error(trained, tmp_path):
    import shutil

    import yaml

    from emovid.analyze import load_personality_predictor
    from emovid.errors import ConfigError

    shutil.copytree(trained / "p", tmp_path / "p")
    cfg_file = tmp_path / "p" / "train_config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["model_args"].pop("face_embedder")
    cfg_file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="does not record which face model"):
        load_personality_predictor(tmp_path / "p")
