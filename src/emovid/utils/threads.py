"""CPU threads for emovid's work: how many, and how they wait, chosen before torch starts its OpenMP runtime.

torch runs its CPU operators on one OpenMP thread per core, and libgomp (the OpenMP runtime of torch's Linux
wheels) lets idle threads *spin* for a while at every barrier before sleeping. On a quiet machine that shaves
microseconds off each operator; next to any other busy process (a shared server, a cluster node, a second emovid
run) it is ruinous: when one thread is pushed off its core, the others burn theirs spinning until it comes back,
and a forward pass of many small operators slows many-fold (x3d_xs at batch 1: ~10x next to one busy loop on
2 cores). ``bench/contention.py`` measures it.

:func:`configure` sets, unless the user already did:

* ``GOMP_SPINCOUNT=1000``: a waiting thread spins briefly (about a microsecond) and then sleeps, giving its core
  away. libgomp's default is 300,000 spins. ``OMP_WAIT_POLICY=PASSIVE`` (0 spins) wakes every waiting thread
  through the kernel, which on an idle machine made a model of many small operators 2.2-2.7x slower (x3d_xs at
  batch 1, 2 cores); 1,000 spins keep most of the idle speed (0.8-1.0x) and still halve the contended slowdown
  (``bench/contention.py``, BENCHMARKS.md "contention"; spin counts from 100 to 30,000 were measured: 300 already
  loses the idle speed, 3,000 the contended gain). An ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already in the
  environment is left as it is; ``OMP_WAIT_POLICY=PASSIVE`` is the better choice where every core is always busy.
* the thread count, when one is asked for (``threads=`` / ``emovid --threads N`` / ``EMOVID_THREADS=N``); otherwise
  an ``OMP_NUM_THREADS`` already set is kept, else torch's own choice (one per physical core) stands.

Both are read once, when torch loads libgomp, so :func:`configure` must run before the first ``import torch``.
The ``emovid`` command does it first thing (flag ``--threads N``, environment ``EMOVID_THREADS``; set
``OMP_WAIT_POLICY=ACTIVE`` to get libgomp's long spinning back on a machine of your own). From Python::

    from emovid.utils.threads import configure
    configure()            # or configure(threads=4); before torch is imported (also indirectly)
    import emovid, torch   # ...

Called after torch is loaded, :func:`configure` can still set the thread count (``torch.set_num_threads``) but not
the wait policy; it says so in the returned record (``"late": True``).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: Environment variable with the thread count the ``emovid`` command uses (a positive integer).
ENV_THREADS = "EMOVID_THREADS"
#: How many times a waiting OpenMP thread spins before it sleeps, when the environment does not say (libgomp: 300,000).
SPIN_COUNT = 1000


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a cluster job's allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _parse_threads(value: int | str | None, where: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        from emovid.errors import ConfigError

        raise ConfigError(f"{where} must be a positive number of threads (or 'auto'), got {value!r}")
    return n


def configure(threads: int | str | None = None, wait_policy: str | None = None) -> dict:
    """Choose emovid's CPU thread count and OpenMP wait policy (see the module notes). Idempotent.

    Args:
        threads: intra-op threads; ``None`` or ``"auto"``: ``$EMOVID_THREADS``, else an ``OMP_NUM_THREADS`` already
            set, else torch's default.
        wait_policy: ``"PASSIVE"`` or ``"ACTIVE"``; ``None``: ``$OMP_WAIT_POLICY`` / ``$GOMP_SPINCOUNT`` when set,
            else a brief spin (``GOMP_SPINCOUNT`` = :data:`SPIN_COUNT`), reported as ``"SPIN1000"``.

    Returns:
        ``{"threads": int|None, "threads_from": str, "wait_policy": str|None, "wait_from": str, "late": bool}``;
        ``threads`` None means torch's default; ``late``: torch was already imported, the wait policy could not be
        changed.

    Raises:
        emovid.errors.ConfigError: a thread count that is not a positive integer.
    """
    env = os.environ
    late = "torch" in sys.modules
    n = _parse_threads(threads, "--threads")
    source = "argument"
    if n is None:
        n, source = _parse_threads(env.get(ENV_THREADS), ENV_THREADS), ENV_THREADS
    if n is None and env.get("OMP_NUM_THREADS"):
        source = "OMP_NUM_THREADS (kept)"
    elif n is None:
        source = "torch default"
    if wait_policy is not None:
        policy, wait_from = wait_policy.upper(), "argument"
        if policy not in ("PASSIVE", "ACTIVE"):
            from emovid.errors import ConfigError

            raise ConfigError(f"wait policy must be PASSIVE or ACTIVE, got {wait_policy!r}")
    elif env.get("OMP_WAIT_POLICY"):
        policy, wait_from = env["OMP_WAIT_POLICY"], "OMP_WAIT_POLICY (kept)"
    elif env.get("GOMP_SPINCOUNT"):
        policy, wait_from = None, "GOMP_SPINCOUNT (kept)"
    else:
        policy, wait_from = f"SPIN{SPIN_COUNT}", "emovid default"
    if not late:
        if policy == f"SPIN{SPIN_COUNT}":
            env["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
        elif policy is not None:
            env["OMP_WAIT_POLICY"] = policy
        if n is not None:
            # torch sizes its pool from OMP_NUM_THREADS when it starts; MKL's own pool likewise
            env["OMP_NUM_THREADS"] = str(n)
            env["MKL_NUM_THREADS"] = str(n)
    else:
        import torch

        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)
        if policy is not None and env.get("OMP_WAIT_POLICY") != policy:
            log.debug("torch is already imported: wait policy %s cannot take effect in this process", policy)
    return {"threads": n, "threads_from": source, "wait_policy": policy, "wait_from": wait_from, "late": late}


class spare_core_for_decoding:
    """Context: give torch one core fewer than usual while a decoding thread runs beside it (``emovid analyze``).

    ``analyze`` decodes the next frames in a thread while the detector and the expression model run; with as many
    torch threads as cores the three compete and torch's threads wait on the descheduled one (on 2 cores: ~100
    frames/s with 2 threads, ~135 with 1; BENCHMARKS.md "analyze"). Does nothing when a count was chosen
    (``--threads``, ``$EMOVID_THREADS``, ``$OMP_NUM_THREADS``) or on a single core; restores torch's count after.
    """

    def __init__(self) -> None:
        self.threads: int | None = None
        self._restore: int | None = None

    def __enter__(self) -> spare_core_for_decoding:
        env = os.environ
        cores = usable_cores()
        if env.get("OMP_NUM_THREADS") or env.get(ENV_THREADS) or cores < 2:
            return self
        self.threads = cores - 1
        if "torch" in sys.modules:
            import torch

            self._restore = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        else:  # torch reads it when it starts
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        return self

    def __exit__(self, *exc) -> None:
        if self._restore is not None:
            import torch

            torch.set_num_threads(self._restore)


__all__ = ["ENV_THREADS", "SPIN_COUNT", "configure", "spare_core_for_decoding", "usable_cores"]
