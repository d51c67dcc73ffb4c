"""Where weights are kept and whether they can be downloaded now: emovid's folders, offline settings, probes.

Weights live in ``$EMOVID_HOME/weights`` (``$EMOVID_CACHE`` is an older name for ``EMOVID_HOME``; default
``~/.cache/emovid``); :func:`use_home` points that elsewhere for a while (``emovid weights fetch --to DIR``).
Offline means ``EMOVID_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (:func:`is_offline`), or a host that does not answer a
short probe (:func:`unreachable`). :mod:`emovid.models.hub` downloads with these; its names are importable from there.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("emovid.models.hub")

HOME_ENV = "EMOVID_HOME"
OFFLINE_ENVS = ("EMOVID_OFFLINE", "HF_HUB_OFFLINE")
NETWORK_TIMEOUT_ENV = "EMOVID_NETWORK_TIMEOUT"
_home_override: Path | None = None  # set by use_home() (`emovid weights fetch --to DIR`)


def home_dir() -> Path:
    """emovid's data folder: :func:`use_home`, else ``$EMOVID_HOME``, ``$EMOVID_CACHE`` or ``~/.cache/emovid``."""
    if _home_override is not None:
        return _home_override
    root = os.environ.get(HOME_ENV) or os.environ.get("EMOVID_CACHE")  # EMOVID_CACHE: the older name, still honoured
    return Path(root).expanduser() if root else Path(os.path.expanduser("~")) / ".cache" / "emovid"


def _home_is_set() -> bool:
    return _home_override is not None or bool(os.environ.get(HOME_ENV) or os.environ.get("EMOVID_CACHE"))


def cache_dir() -> Path:
    """Where weights from URLs are looked for and kept: ``home_dir() / "weights"``."""
    return home_dir() / "weights"


def hf_cache_dir() -> Path:
    """emovid's own Hugging Face cache (hub layout): ``cache_dir() / "hf"``."""
    return cache_dir() / "hf"


@contextmanager
def use_home(path: str | os.PathLike) -> Iterator[Path]:
    """Use ``path`` as :func:`home_dir` inside the block (process-wide), e.g. to fetch weights for another machine."""
    global _home_override
    previous, _home_override = _home_override, Path(path).expanduser().absolute()
    try:
        yield _home_override
    finally:
        _home_override = previous


def is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_ENVS)


def _offline_env() -> str | None:
    return next((v for v in OFFLINE_ENVS if os.environ.get(v, "").lower() in ("1", "true", "yes")), None)


# ---- is the network there? -------------------------------------------------------------------------------------

# Without this a machine without network (but without EMOVID_OFFLINE) waits for the hub client's retries and read
# time-outs (25-60 s and more) before each failed download. One HEAD request per host with a short time-out answers
# in well under a second online; any HTTP reply (404 included) means "reachable", so only silence or a refused
# connection counts as offline. It goes through urllib, so the same proxy settings apply as to the download.
_probes: dict[str, str | None] = {}
_probes_lock = threading.Lock()


def network_timeout() -> float:
    """Seconds :func:`unreachable` waits for a host: ``$EMOVID_NETWORK_TIMEOUT``, default 2."""
    try:
        return max(0.05, float(os.environ.get(NETWORK_TIMEOUT_ENV, "") or 2.0))
    except ValueError:
        return 2.0


def unreachable(url: str) -> str | None:
    """Why the host of ``url`` cannot be reached now (a short phrase), or ``None`` when it answers.

    The answer is kept per scheme, host and port for the rest of the process. Non-HTTP URLs (``file://``) are
    never probed. Name resolution is bounded too: the probe runs in a thread that is given up after the time-out.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}/"
    with _probes_lock:
        if origin in _probes:
            return _probes[origin]
    timeout = network_timeout()
    result: list[str | None] = [f"no answer within {timeout:g} s"]

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(origin, method="HEAD"), timeout=timeout):  # noqa: S310
                pass
            result[0] = None
        except urllib.error.HTTPError:  # the server answered: reachable
            result[0] = None
        except urllib.error.URLError as e:
            import ssl

            # a certificate the system store rejects is the downloader's business (it has its own CA bundle)
            result[0] = None if isinstance(e.reason, ssl.SSLError) else _reason(e.reason)
        except (OSError, ValueError) as e:
            result[0] = _reason(e)

    worker = threading.Thread(target=probe, name="emovid-network-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.25)
    answer = result[0]
    with _probes_lock:
        _probes[origin] = answer
    if answer:
        log.debug("%s unreachable: %s", origin, answer)
    return answer


def _reason(e: object) -> str:
    if isinstance(e, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return f"no answer within {network_timeout():g} s"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).strip().splitlines()[0]


def forget_network_probes() -> None:
    """Forget :func:`unreachable`'s answers (e.g. after the network came back)."""
    with _probes_lock:
        _probes.clear()
