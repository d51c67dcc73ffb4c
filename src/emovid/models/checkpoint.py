"""Reading checkpoint files without running their code, and loading state dicts into models.

Every checkpoint is read by :func:`load_checkpoint`, which never runs code stored in a pickle: only tensors,
plain data and a few allow-listed types (:func:`checkpoint_safe_globals`) are rebuilt, unless the user trusts
checkpoints (``emovid --trust-checkpoint``, ``EMOVID_TRUST_CHECKPOINT=1``; :func:`set_trust_checkpoints`).
:func:`load_state_dict` loads weights into a model and says what did not fit (:class:`LoadReport`).

Every name here is importable from :mod:`emovid.models.hub` too.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from emovid.errors import ModelError

log = logging.getLogger("emovid.models.hub")

STATE_DICT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")


TRUST_ENV = "EMOVID_TRUST_CHECKPOINT"
TRUST_FLAG = "--trust-checkpoint"
_trust: bool | None = None  # None: follow $EMOVID_TRUST_CHECKPOINT


def set_trust_checkpoints(trust: bool | None) -> bool | None:
    """Set the process-wide default of :func:`load_checkpoint`'s ``trust`` (``None``: ``$EMOVID_TRUST_CHECKPOINT``).

    Returns:
        The previous setting, so a caller can put it back.
    """
    global _trust
    previous, _trust = _trust, trust
    return previous


def trust_checkpoints() -> bool:
    """Whether checkpoints are trusted by default: :func:`set_trust_checkpoints`, else ``$EMOVID_TRUST_CHECKPOINT``."""
    if _trust is not None:
        return _trust
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def checkpoint_safe_globals() -> list:
    """The non-tensor types a checkpoint may hold without ``trust``: plain data that runs no code when rebuilt.

    * ``argparse.Namespace``: the ``args`` that DINO (``main_dino.py``), VideoMAE (``utils.save_model``) and
      lipreading-style training scripts store next to the weights;
    * NumPy scalars, arrays and dtypes: e.g. EmoNeXt's ``best_acc`` (a ``np.float64`` from ``np.mean``) and
      feature-cache timestamps. Pickles name NumPy's internals ``numpy.core.*`` (NumPy 1) or ``numpy._core.*``
      (NumPy 2); both names are listed. Object arrays stay safe: their items go through the same restricted
      unpickler.
    """
    import argparse

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # NumPy 2 | NumPy 1
    multiarray = core.multiarray
    out: list = [argparse.Namespace, np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    # dtype classes (numpy.dtypes.Float64DType, ...): pickled by name when a checkpoint stores a dtype's type
    codes = [*"?bBhHiIlLqQefdgFDGOUSV", "M8[s]", "m8[s]"]
    out += list(dict.fromkeys(type(np.dtype(code)) for code in codes))
    return out


# A refused pickle names what it wanted: an unknown or blocked global, or an object of a class not allowed.
_GLOBAL_RE = re.compile(
    r"GLOBAL (\S+)|allowlisted via `add_safe_globals`,? but got <class '([^']+)'>|unrecognized function (\S+)"
)


def load_checkpoint(path: str | os.PathLike, *, trust: bool | None = None, map_location: Any = "cpu") -> Any:
    """Read a checkpoint file without running code from it: every checkpoint read in emovid goes through here.

    ``.safetensors`` files hold tensors only. Torch pickles (``.pth``/``.pyth``/``.pt``/``.bin``/``.ckpt``) are
    read with ``torch.load(weights_only=True)``, which rebuilds tensors, containers and plain values only, plus
    the types of :func:`checkpoint_safe_globals`; anything else (e.g. a ``__reduce__`` that calls ``os.system``)
    is refused. With ``trust`` the file is unpickled without restriction, which runs whatever code it holds.

    Args:
        path: the checkpoint file.
        trust: load pickles without restriction; ``None`` follows :func:`trust_checkpoints` (``emovid
            --trust-checkpoint``, ``$EMOVID_TRUST_CHECKPOINT=1``).
        map_location: as for :func:`torch.load`.

    Raises:
        InputNotFoundError: no such file.
        ModelError: the file pickles something else than tensors and plain data (the message names it and the
            opt-in), or it is not a readable checkpoint.
    """
    from emovid.utils.paths import check_regular_file

    path = Path(check_regular_file(path, "file"))  # a FIFO would block torch.load forever
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
        try:
            return load_file(str(path), device=device)
        except Exception as e:
            raise ModelError(f"not a readable safetensors file ({e})", path) from e
    if trust is None:
        trust = trust_checkpoints()
    if trust:
        log.debug("%s: unpickling without restriction (trusted)", path)
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as e:
            raise ModelError(f"not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})", path) from e
    allowed = checkpoint_safe_globals()
    # safe_globals removes its entries on exit; leave alone those the caller registered process-wide itself.
    registered = set(torch.serialization.get_safe_globals())
    try:
        with torch.serialization.safe_globals([g for g in allowed if g not in registered]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, str(e)) from None
    except Exception as e:
        raise ModelError(f"not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})", path) from e


def _refusal(path: Path, message: str) -> ModelError:
    hint = f"pass {TRUST_FLAG} (or set {TRUST_ENV}=1) only if you trust this file: that runs the file's code"
    m = _GLOBAL_RE.search(message)
    if m:
        what = next(g for g in m.groups() if g).strip()
        return ModelError(f"refusing to load: it pickles {what}, not just tensors and plain data; {hint}", path)
    detail = next((ln.strip() for ln in message.splitlines()[::-1] if ln.strip() and "documentation" not in ln), "")
    return ModelError(f"not a checkpoint that can be read safely ({detail}); it may be damaged, or {hint}", path)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def load_state_dict_file(path: str | os.PathLike, trust: bool | None = None) -> dict:
    """Read a checkpoint file (``.safetensors``, or a torch pickle such as ``.pth``/``.pyth``/``.bin``/``.ckpt``).

    Pickles never run code unless trusted: see :func:`load_checkpoint`.
    """
    return load_checkpoint(path, trust=trust)


def state_dict_from_dir(path: str | os.PathLike) -> dict:
    """The weights in a model folder (``model.safetensors``, ``pytorch_model.bin``, ...)."""
    path = Path(path)
    for name in STATE_DICT_FILES:
        if (path / name).exists():
            return load_state_dict_file(path / name)
    shards = sorted(path.glob("model-*.safetensors"))
    if shards:
        sd: dict = {}
        for s in shards:
            sd.update(load_state_dict_file(s))
        return sd
    raise ModelError(f"no weights file ({', '.join(STATE_DICT_FILES)}) in the folder", path)


def unwrap_state_dict(obj: object, keys: tuple[str, ...] = ("model_state", "state_dict", "model", "module")) -> dict:
    """Find the tensor dict inside common checkpoint wrappers and strip ``module.`` (DDP) prefixes."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in keys if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise ModelError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


# ---- loading into a model --------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What happened when weights were loaded into a model."""

    source: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model) shapes
    loaded: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.source}"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} ({_few(keys)})")
        if self.mismatched:
            parts.append(
                f"{len(self.mismatched)} skipped for shape ({_few([f'{k} {a}->{b}' for k, a, b in self.mismatched])})"
            )
        return "; ".join(parts)


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def load_state_dict(
    model: nn.Module,
    state_dict: dict,
    strict: bool = True,
    allow_size_mismatch: bool = False,
    source: str = "state dict",
) -> LoadReport:
    """Load ``state_dict`` into ``model`` and report missing, unexpected and shape-mismatched keys.

    Args:
        strict: raise on missing or unexpected keys.
        allow_size_mismatch: drop tensors whose shape differs from the model's (VAERR's
            ``--allow-size-mismatch``) instead of raising.

    Raises:
        ModelError: the checkpoint does not fit the model (the message lists the first offending keys).
    """
    own = model.state_dict()
    report = LoadReport(source=source)
    clean = {}
    for k, v in state_dict.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            clean[k] = v
    if report.mismatched and not allow_size_mismatch:
        raise ModelError(
            f"checkpoint {source} does not fit {type(model).__name__}: "
            f"{len(report.mismatched)} tensors differ in shape "
            f"({_few([f'{k} {a} vs {b}' for k, a, b in report.mismatched])}); "
            "is it from another model size? (--allow-size-mismatch skips them; allow_size_mismatch=True in Python)"
        )
    result = model.load_state_dict(clean, strict=False)
    report.missing = [k for k in result.missing_keys if k not in {m[0] for m in report.mismatched}]
    report.unexpected = list(result.unexpected_keys)
    report.loaded = len(clean) - len(report.unexpected)
    if strict and (report.missing or report.unexpected):
        raise ModelError(
            f"checkpoint {source} does not match {type(model).__name__}: {len(report.missing)} missing "
            f"({_few(report.missing)}), {len(report.unexpected)} unexpected ({_few(report.unexpected)}); "
            "is it a checkpoint of this model? (--allow-size-mismatch loads what matches; strict=False in Python)"
        )
    if not report.ok:
        log.warning("%s", report)
    return report
