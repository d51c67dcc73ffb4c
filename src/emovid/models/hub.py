"""Finding and loading pretrained weights: tags, local files, local folders, Hugging Face repos and URLs.

Weights live in ``$EMOVID_HOME/weights`` (``$EMOVID_CACHE`` is an older name for ``EMOVID_HOME``; default
``~/.cache/emovid``): files from URLs directly, Hugging Face files in ``weights/hf`` (the hub's cache layout) when
``EMOVID_HOME`` is set, else in the Hugging Face cache. Files already there are used without asking the network.
:func:`fetch_weights` (``emovid weights fetch``) downloads ahead of time, e.g. for an offline cluster.

Every downloaded file is verified whenever it is used: against the ``sha256`` its :class:`WeightSource` declares,
or, where none is published, against the sha256 recorded in ``$EMOVID_HOME/weights/weights.lock.json`` when the
file was first downloaded (:mod:`emovid.models.weights_lock`).

Offline (``EMOVID_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, or a host that does not answer a short probe, see
:func:`unreachable`) a download that is needed becomes, at once, a :class:`~emovid.errors.WeightsUnavailableError`
naming the file, its URL or hub id, the command that fetches it and where to put it.

Every checkpoint is read by :func:`load_checkpoint`, which never runs code stored in a pickle: only tensors,
plain data and a few allow-listed types (:func:`checkpoint_safe_globals`) are rebuilt, unless the user trusts
checkpoints (``emovid --trust-checkpoint``, ``EMOVID_TRUST_CHECKPOINT=1``).

This module resolves, downloads and fetches; the folders and network checks are :mod:`emovid.models.hub_env`,
checkpoint reading and state-dict loading :mod:`emovid.models.checkpoint`. Their names are importable from here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from emovid.errors import InputNotFoundError, ModelError, WeightsUnavailableError
from emovid.models.checkpoint import STATE_DICT_FILES as STATE_DICT_FILES
from emovid.models.checkpoint import TRUST_ENV as TRUST_ENV
from emovid.models.checkpoint import TRUST_FLAG as TRUST_FLAG
from emovid.models.checkpoint import LoadReport as LoadReport
from emovid.models.checkpoint import _first_line as _first_line
from emovid.models.checkpoint import _refusal as _refusal
from emovid.models.checkpoint import checkpoint_safe_globals as checkpoint_safe_globals
from emovid.models.checkpoint import load_checkpoint as load_checkpoint
from emovid.models.checkpoint import load_state_dict as load_state_dict
from emovid.models.checkpoint import load_state_dict_file as load_state_dict_file
from emovid.models.checkpoint import set_trust_checkpoints as set_trust_checkpoints
from emovid.models.checkpoint import state_dict_from_dir as state_dict_from_dir
from emovid.models.checkpoint import trust_checkpoints as trust_checkpoints
from emovid.models.checkpoint import unwrap_state_dict as unwrap_state_dict
from emovid.models.hub_env import HOME_ENV as HOME_ENV
from emovid.models.hub_env import NETWORK_TIMEOUT_ENV as NETWORK_TIMEOUT_ENV
from emovid.models.hub_env import OFFLINE_ENVS as OFFLINE_ENVS
from emovid.models.hub_env import _home_is_set as _home_is_set
from emovid.models.hub_env import _offline_env as _offline_env
from emovid.models.hub_env import _reason as _reason
from emovid.models.hub_env import cache_dir as cache_dir
from emovid.models.hub_env import forget_network_probes as forget_network_probes
from emovid.models.hub_env import hf_cache_dir as hf_cache_dir
from emovid.models.hub_env import home_dir as home_dir
from emovid.models.hub_env import is_offline as is_offline
from emovid.models.hub_env import network_timeout as network_timeout
from emovid.models.hub_env import unreachable as unreachable
from emovid.models.hub_env import use_home as use_home
from emovid.models.registry import PretrainedCfg, WeightSource
from emovid.models.weights_lock import LOCK_NAME as LOCK_NAME
from emovid.models.weights_lock import check_locked as check_locked
from emovid.models.weights_lock import lock_path as lock_path

# ---- resolving a `pretrained=` value to something on disk ------------------------------------------------------


@dataclass
class Resolved:
    """A weight source on local disk: a checkpoint ``file`` or a model ``dir``."""

    path: Path
    kind: str  # "file" | "dir"
    source: str


def resolve(pretrained: str | bool, cfg: PretrainedCfg | None = None, model_name: str = "model") -> Resolved:
    """Turn a ``pretrained`` value into a local file or folder, downloading when needed and allowed.

    Raises:
        ModelError: an unknown tag.
        InputNotFoundError: a local path that does not exist.
        WeightsUnavailableError: a download is needed and the machine is offline.
    """
    cfg = cfg or PretrainedCfg()
    if pretrained is True:
        if not cfg.default_tag:
            raise ModelError(f"{model_name} has no default pretrained weights; pass a file or a tag")
        pretrained = cfg.default_tag
    spec = str(pretrained)
    if spec in cfg.weights:
        return _resolve_source(cfg.weights[spec], f"{model_name}:{spec}", fetch=f"{model_name}.{spec}")
    if spec.startswith("local-dir:"):
        p = Path(spec[len("local-dir:") :]).expanduser()
        if not p.is_dir():
            raise InputNotFoundError(p, "folder")
        return Resolved(p, "dir", spec)
    if spec.startswith(("http://", "https://")):
        url, _, frag = spec.partition("#")
        sha = frag[len("sha256=") :] if frag.startswith("sha256=") else None
        return _resolve_source(WeightSource(url=url, sha256=sha), spec)
    if spec.startswith("hf-hub:"):
        parts = spec[len("hf-hub:") :].split("/")
        repo = "/".join(parts[:2])
        filename = "/".join(parts[2:]) or None
        return _resolve_source(WeightSource(hf_hub_id=repo, hf_filename=filename), spec)
    p = Path(spec).expanduser()
    if p.exists():
        return Resolved(p, "dir" if p.is_dir() else "file", spec)
    if spec.count("/") == 1 and not spec.startswith((".", "/")) and not p.suffix:
        return _resolve_source(WeightSource(hf_hub_id=spec), f"hf-hub:{spec}")
    tags = ", ".join(sorted(cfg.weights)) or "none"
    raise ModelError(
        f"pretrained={spec!r} is not a file, a folder, a URL, a hub id or a tag of {model_name} (tags: {tags})"
    )


def _resolve_source(src: WeightSource, label: str, fetch: str | None = None, into_home: bool = False) -> Resolved:
    """``src`` on local disk; ``fetch`` is the ``emovid weights fetch`` argument that gets it (for messages).

    ``into_home``: Hugging Face files must end up in :func:`hf_cache_dir` (not found in the hub's own cache).
    """
    if src.url:
        return Resolved(download_url(src.url, src.sha256, src.filename, fetch=fetch), "file", label)
    if src.hf_hub_id:
        return _verify_hf(src, _resolve_hf(src, label, fetch=fetch, into_home=into_home))
    raise ModelError(f"weights {label} have no URL or hub id")


def _no_download(url: str) -> str | None:
    """Why nothing can be downloaded from ``url`` now (offline setting or a silent host), or ``None``."""
    if url.startswith("file:"):  # a local copy needs no network, offline or not
        return None
    env = _offline_env()
    if env:
        return f"{env}=1 is set (unset it to download)"
    why = unreachable(url)
    if why:
        host = url.split("://", 1)[-1].split("/", 1)[0]
        return f"{host} cannot be reached ({why}; on machines without network set EMOVID_OFFLINE=1)"
    return None


def _fetch_hint(fetch: str | None) -> str:
    return f"`emovid weights fetch {fetch} --to DIR` and copy DIR here as $EMOVID_HOME, or " if fetch else ""


def download_url(url: str, sha256: str | None = None, filename: str | None = None, fetch: str | None = None) -> Path:
    """Download ``url`` into :func:`cache_dir` (once) and verify it on every call; returns the cached path.

    The file is checked against ``sha256`` when given, else against the sha256 recorded in the weights lock file
    when it was first downloaded (:mod:`emovid.models.weights_lock`).

    Args:
        fetch: the ``emovid weights fetch`` argument that gets this file, named in the offline message.

    Raises:
        WeightsUnavailableError: offline, the host does not answer, or the download failed (the message names the
            file, the URL, the command that fetches it and where to put it).
        ModelError: the file does not match ``sha256`` or the sha256 recorded at its first download.
    """
    name = filename or os.path.basename(url.split("?")[0]) or hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir() / name
    safe_url = url.split("?")[0]  # query strings can hold access tokens (Azure SAS): never print them
    if dest.exists():
        if sha256 and _sha256(dest) != sha256.lower():
            raise ModelError(
                f"checksum mismatch for cached weights (sha256 {_sha256(dest)[:16]}..., expected "
                f"{sha256.lower()[:16]}...); delete the file and fetch it again",
                dest,
            )
        if not sha256:
            check_locked(dest, safe_url)
        return dest

    def unavailable(why: str) -> WeightsUnavailableError:
        e = WeightsUnavailableError(
            f"weights {name} are not here and cannot be downloaded: {why}. On a connected machine run "
            f"{_fetch_hint(fetch)}download {safe_url} and put it at this path (the folder is $EMOVID_HOME/weights), "
            "or pass the file with --pretrained FILE (--pretrained none: random init)",
            dest,
        )
        e.reason = why  # for callers that word their own message (YuNet)
        return e

    why = _no_download(url)
    if why:
        raise unavailable(why)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out, length=1 << 20)
        with open(tmp, "rb") as f:
            head = f.read(256).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            # e.g. a Google Drive quota page or an expired link: never cache it as if it were the weights
            raise unavailable(f"{safe_url} returned a web page, not a weights file")
        if sha256 and _sha256(Path(tmp)) != sha256.lower():
            raise ModelError(
                f"the file downloaded from {safe_url} does not match its sha256 (got {_sha256(Path(tmp))[:16]}..., "
                f"expected {sha256.lower()[:16]}...); not using it",
                dest,
            )
        if not sha256:  # first download: recorded; a download after the file was deleted must match the record
            check_locked(tmp, safe_url, shown=dest)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise unavailable(f"the download failed ({_reason(getattr(e, 'reason', e))})") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# TensorFlow, Flax, ONNX and Core ML files of a hub repo are never read: do not download them with the weights.
_HF_IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.mlmodel", "coreml/*", "onnx/*", "openvino/*"]


def _hf_endpoint() -> str:
    from huggingface_hub import constants

    # read at each call (constants.ENDPOINT is fixed when huggingface_hub is imported)
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hf_get(src: WeightSource, cache: Path | None, local_only: bool) -> Path:
    import huggingface_hub as hf

    if local_only and src.hf_filename:
        # not hf_hub_download(local_files_only=True): it builds request headers, which asks the Hub for its
        # "agent harness" list (3 s time-out) even though no file is downloaded
        found = hf.try_to_load_from_cache(src.hf_hub_id, src.hf_filename, cache_dir=str(cache) if cache else None)
        if not isinstance(found, str):
            raise FileNotFoundError(src.hf_filename)
        return Path(found)
    kw: dict[str, Any] = {"cache_dir": str(cache) if cache else None, "local_files_only": local_only}
    if not local_only:
        kw["endpoint"] = _hf_endpoint()
    if src.hf_filename:
        return Path(hf.hf_hub_download(src.hf_hub_id, src.hf_filename, **kw))
    return Path(hf.snapshot_download(src.hf_hub_id, ignore_patterns=_HF_IGNORE, **kw))


def _resolve_hf(src: WeightSource, label: str, fetch: str | None = None, into_home: bool = False) -> Resolved:
    try:
        from huggingface_hub import constants
    except ImportError as e:  # pragma: no cover - transformers depends on it
        raise ModelError("huggingface_hub is needed to fetch hub weights: pip install huggingface_hub") from e
    kind = "file" if src.hf_filename else "dir"
    # Look before asking the network: emovid's folder, then the hub's own cache (`hf download` fills that one).
    ours = hf_cache_dir()
    for cache in [ours] if into_home else [ours, None]:
        if cache is not None and not cache.is_dir():
            continue
        try:
            return Resolved(_hf_get(src, cache, local_only=True), kind, label)
        except Exception:  # not cached there (the hub raises several classes for that)
            continue
    target = ours if (into_home or _home_is_set()) else None
    what = f"{src.hf_hub_id} {src.hf_filename}" if src.hf_filename else src.hf_hub_id
    url = f"{_hf_endpoint()}/{src.hf_hub_id}"

    def unavailable(why: str) -> WeightsUnavailableError:
        e = WeightsUnavailableError(
            f"Hugging Face weights {what} ({url}) are not cached and cannot be downloaded: {why}. On a connected "
            f"machine run {_fetch_hint(fetch)}`hf download {what}` and copy the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) to the same place here (or run it with --cache-dir {ours}), or put the files "
            "in a folder and pass --pretrained local-dir:FOLDER (--pretrained none: random init)"
        )
        e.reason = why  # for callers that word their own message (YuNet)
        return e

    why = _no_download(url)
    if why:
        raise unavailable(why)
    try:
        return Resolved(_hf_get(src, target, local_only=False), kind, label)
    except Exception as e:  # hub errors come in many classes; all mean "not available here"
        raise unavailable(f"the download failed ({type(e).__name__}: {_first_line(e)[:200]})") from e


def _verify_hf(src: WeightSource, res: Resolved) -> Resolved:
    """Check hub files: against ``src.sha256`` (single files) when declared, else against the weights lock file."""
    if res.kind == "file":
        if src.sha256:
            got = _sha256(res.path)
            if got != src.sha256.lower():
                raise ModelError(
                    f"sha256 {got[:16]}... of {src.hf_hub_id} {src.hf_filename} is not the published "
                    f"{src.sha256.lower()[:16]}...; delete the file and fetch it again",
                    res.path,
                )
        else:
            check_locked(res.path, f"hf:{src.hf_hub_id}/{src.hf_filename}")
        return res
    for p in sorted(res.path.rglob("*")):  # a model folder: every file of the snapshot
        if p.is_file():
            check_locked(p, f"hf:{src.hf_hub_id}/{p.relative_to(res.path).as_posix()}")
    return res


# ---- fetching ahead of time (`emovid weights fetch`) --------------------------------------------------------------

#: Weight sets that belong to no registered model: name -> "module:attribute" of their PretrainedCfg.
EXTRA_WEIGHTS = {"yunet": "emovid.faces.yunet:YUNET_WEIGHTS"}


def weights_cfg(name: str) -> PretrainedCfg:
    """The :class:`PretrainedCfg` (weight tags) of a registered model or of an :data:`EXTRA_WEIGHTS` name.

    Raises:
        ModelError: no such model.
    """
    if name in EXTRA_WEIGHTS:
        import importlib

        module, _, attr = EXTRA_WEIGHTS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    from emovid.models.registry import get_model_entry

    return get_model_entry(name).cfg


def fetch_weights(specs: Sequence[str], to: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Download the weights named ``NAME`` (its default tag) or ``NAME.TAG``, checking their sha256 when known.

    Args:
        specs: e.g. ``["x3d_s", "videomae_base_patch16_224.k400_ft", "yunet"]``.
        to: the emovid home to fill (files go to ``TO/weights``; Hugging Face files to ``TO/weights/hf``); copy it
            to an offline machine and set ``EMOVID_HOME`` to it there. Default: :func:`home_dir`.

    Returns:
        One ``{"name", "path", "kind", "bytes", "sha256"}`` per spec (``sha256`` of a single file only).

    Raises:
        ModelError: an unknown model or tag, a model without a default tag, a checksum mismatch.
        WeightsUnavailableError: a download is impossible (offline, host silent, failed).
    """
    jobs = []
    for spec in specs:  # check every name before the first download
        name, _, tag = str(spec).partition(".")
        cfg = weights_cfg(name)
        tags = ", ".join(sorted(cfg.weights)) or "none"
        if not tag:
            if not cfg.default_tag:
                raise ModelError(f"{name} has no default weights; name a tag as {name}.TAG (tags: {tags})")
            tag = cfg.default_tag
        if tag not in cfg.weights:
            raise ModelError(f"{name} has no weights {tag!r} (tags: {tags}; `emovid list-models {name}`)")
        jobs.append((name, tag, cfg.weights[tag]))
    out = []
    with use_home(to) if to is not None else nullcontext():
        for name, tag, src in jobs:
            res = _resolve_source(src, f"{name}:{tag}", fetch=f"{name}.{tag}", into_home=to is not None)
            files = [res.path] if res.kind == "file" else [p for p in sorted(res.path.rglob("*")) if p.is_file()]
            out.append(
                {
                    "name": f"{name}.{tag}",
                    "path": str(res.path),
                    "kind": res.kind,
                    "bytes": sum(p.stat().st_size for p in files),
                    "sha256": _sha256(res.path) if res.kind == "file" else None,
                }
            )
    return out


def _sha256(path: Path) -> str:
    from emovid.utils.io import file_sha256

    return file_sha256(path)


# ---- loading into a model --------------------------------------------------------------------------------------


def load_pretrained(
    model: nn.Module,
    pretrained: str | bool,
    cfg: PretrainedCfg | None = None,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
    strict: bool = True,
    allow_size_mismatch: bool = False,
) -> LoadReport:
    """Resolve ``pretrained``, read it, convert its layout with ``filter_fn`` and load it into ``model``.

    A model may define ``load_pretrained_dir(path) -> state_dict`` to read folders in its own way (e.g. a
    Hugging Face model folder whose ``config.json`` must be checked); otherwise folders are read with
    :func:`state_dict_from_dir`. Likewise ``load_pretrained_file(path) -> state_dict`` for files (e.g. ONNX
    weights); otherwise files are read with :func:`load_state_dict_file`.
    """
    name = getattr(model, "model_name", type(model).__name__)
    res = resolve(pretrained, cfg or getattr(model, "pretrained_cfg", None), name)
    if res.kind == "dir":
        reader = getattr(model, "load_pretrained_dir", None)
        raw = reader(res.path) if reader is not None else state_dict_from_dir(res.path)
    else:
        # a model may read files in its own way too (e.g. hsemotion converts EmotiEffLib's .onnx files)
        file_reader = getattr(model, "load_pretrained_file", None)
        raw = file_reader(res.path) if file_reader is not None else load_state_dict_file(res.path)
    sd = filter_fn(raw, model) if filter_fn is not None else unwrap_state_dict(raw)
    return load_state_dict(model, sd, strict=strict, allow_size_mismatch=allow_size_mismatch, source=str(res.path))
