"""Contention: emovid's throughput next to a competing busy process vs alone, before and after its thread policy.

A shared server or cluster node is the normal case: another job holds a core. With torch's defaults (one OpenMP
thread per core, libgomp's spin-waiting) a 2-core run next to one busy loop slows many-fold, because the
OpenMP threads spin at every barrier waiting for the one pushed off its core. emovid's policy
(:mod:`emovid.utils.threads`) sets the thread count and a brief spin (``GOMP_SPINCOUNT=1000``) before torch's
runtime starts.

Workload: x3d_xs (random weights, eval, ``torch.inference_mode``) at batch 1 on its native 4x160x160 clip, and
``fer_mini_xception`` at batch 32 (``emovid analyze``'s face model). Each configuration runs in its own worker
process (the wait policy is read once, when libgomp loads) that stays alive; the parent alternates, window by
window and configuration by configuration, between *alone* and *contended* (a competing process running a
busy loop on one core, started and stopped by the parent), so background load hits every configuration alike.
``ratio`` = contended throughput / alone throughput of the same configuration (goal >= 0.5);
``speed vs default alone`` / ``contended``: a configuration's throughput over torch's defaults' in that state.

Configurations: ``default`` (torch's defaults: nothing set, as before), ``emovid`` (what
``emovid.utils.threads.configure()`` chooses: what the CLI does), and for reference ``passive``
(``OMP_WAIT_POLICY=PASSIVE``: no spinning, what emovid chose before), ``spin 300`` / ``spin 3k`` (emovid's spin count's
neighbours) and ``1 thread`` (with libgomp's default and with the passive wait policy).

Background: other processes' CPU use during each window (``/proc/stat`` busy time minus the worker's and the
competitors') is recorded as ``background cores``; on a machine shared with other jobs "alone" is not alone, and
the ``speed vs default`` column (throughput / torch-defaults throughput in the same state, measured back to back)
is then the robust before/after figure.

Run: ``python bench/contention.py [--seconds 3] [--repeat 3] [--competitors 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table, write_results  # noqa: E402

SRC = str(Path(__file__).resolve().parent.parent / "src")
WORKLOADS = {"x3d_xs_b1": ("x3d_xs", 1), "fer_b32": ("fer_mini_xception", 32)}

COLUMNS = [
    "workload",
    "config",
    "threads",
    "wait policy",
    "alone ms",
    "contended ms",
    "worst ms",
    "ratio",
    "speed vs default alone",
    "speed vs default contended",
    "background cores",
]
_THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "EMOVID_THREADS")


def _configs(cores: int) -> dict[str, dict]:
    """name -> how its worker is started: ``env`` to set, or ``emovid`` to call configure() in the worker."""
    return {
        "default": {"env": {}},
        "emovid": {"env": {}, "emovid": True},
        "1 thread": {"env": {"OMP_NUM_THREADS": "1"}},
        "1 thread passive": {"env": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}},
        # libgomp spins 300,000 times at a barrier before sleeping when nothing is set; PASSIVE is 0; emovid 1,000
        "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        "spin 300": {"env": {"GOMP_SPINCOUNT": "300"}},
        "spin 3k": {"env": {"GOMP_SPINCOUNT": "3000"}},
    }


# ---- worker: one configuration, kept alive; measures a window on request ---------------------------------------


def _worker(use_emovid: bool, workload: str) -> None:
    sys.path.insert(0, SRC)
    policy = None
    if use_emovid:
        from emovid.utils.threads import configure

        policy = configure()
    import torch

    from emovid.models import create_model

    name, batch = WORKLOADS[workload]
    model = create_model(name).eval()
    cfg = model.pretrained_cfg
    h, w = cfg.input_size
    shape = (batch, cfg.in_chans, h, w) if cfg.num_frames == 1 else (batch, cfg.in_chans, cfg.num_frames, h, w)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for _ in range(3):
            model(x)
    info = {
        "threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
        "policy": policy,
    }
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        seconds = float(line)
        times = []
        t_end = time.perf_counter() + seconds
        with torch.inference_mode():
            while True:
                t0 = time.perf_counter()
                model(x)
                t1 = time.perf_counter()
                times.append(t1 - t0)
                if t1 >= t_end:
                    break
        print("RESULT " + json.dumps({"n": len(times), "wall": sum(times), "median_s": statistics.median(times),
                                      "max_s": max(times)}), flush=True)  # fmt: skip


def _busy() -> None:
    while True:
        pass


# ---- parent ------------------------------------------------------------------------------------------------------


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in _THREAD_ENV}


def _start(name: str, spec: dict, workload: str) -> tuple[subprocess.Popen, dict]:
    env = {**_clean_env(), **spec["env"], "PYTHONPATH": SRC}
    cmd = [sys.executable, __file__, "--worker", workload] + (["--emovid"] if spec.get("emovid") else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"worker {name} failed to start: {line!r}")
    return p, json.loads(line.split(" ", 1)[1])


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process used so far, from /proc (0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _window(p: subprocess.Popen, seconds: float, others: list[subprocess.Popen]) -> dict:
    from _common import _busy_seconds

    ours = [p, *others]
    busy0, own0, t0 = _busy_seconds(), sum(_cpu_seconds(q.pid) for q in ours), time.monotonic()
    p.stdin.write(f"{seconds}\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line.startswith("RESULT "):
        raise RuntimeError(f"worker died: {line!r}")
    busy1, own1, t1 = _busy_seconds(), sum(_cpu_seconds(q.pid) for q in ours), time.monotonic()
    r = json.loads(line.split(" ", 1)[1])
    r["per_s"] = r["n"] / r["wall"]
    if busy0 is not None and busy1 is not None:
        r["background_cores"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)
    return r


def _competitors(n: int) -> list[subprocess.Popen]:
    env = _clean_env()
    procs = [subprocess.Popen([sys.executable, __file__, "--busy"], env=env) for _ in range(n)]
    time.sleep(0.3)  # let the scheduler place them
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one measuring window")
    ap.add_argument("--repeat", type=int, default=3, help="alone/contended window pairs per configuration")
    ap.add_argument("--competitors", type=int, default=1, help="busy processes competing (default 1)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    ap.add_argument("--configs", default=None, help="comma-separated subset of the configurations")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--emovid", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.busy:
        _busy()
    if args.worker:
        _worker(args.emovid, args.worker)
        return
    from _common import LOAD

    configs = _configs(LOAD.cores)
    if args.configs:
        configs = {k: v for k, v in configs.items() if k in args.configs.split(",")}
    results: dict = {}
    for workload in args.workloads.split(","):
        workers = {name: _start(name, spec, workload) for name, spec in configs.items()}
        windows: dict[str, dict[str, list]] = {n: {"alone": [], "contended": []} for n in configs}
        try:
            for rep in range(args.repeat):
                # alternate which state goes first, and the order of the configurations, rep by rep
                states = ("alone", "contended") if rep % 2 == 0 else ("contended", "alone")
                for state in states:
                    comp = _competitors(args.competitors) if state == "contended" else []
                    try:
                        order = list(configs) if rep % 2 == 0 else list(reversed(configs))
                        for name in order:
                            windows[name][state].append(_window(workers[name][0], args.seconds, comp))
                    finally:
                        _stop(comp)
                print(workload, rep, {n: {s: round(w[s][-1]["per_s"], 2) for s in w} for n, w in windows.items()},
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for p, _ in workers.values():
                p.stdin.close()
                p.wait()
        res = {}
        for name, w in windows.items():
            alone = statistics.median(r["per_s"] for r in w["alone"])
            cont = statistics.median(r["per_s"] for r in w["contended"])
            res[name] = {
                "worker": workers[name][1],
                "alone_per_s": alone,
                "contended_per_s": cont,
                "ratio": cont / alone,
                "ratios": [c["per_s"] / a["per_s"] for a, c in zip(w["alone"], w["contended"], strict=True)],
                "alone_ms": 1000 * statistics.median(r["median_s"] for r in w["alone"]),
                "contended_ms": 1000 * statistics.median(r["median_s"] for r in w["contended"]),
                "contended_worst_ms": 1000 * max(r["max_s"] for r in w["contended"]),
                "background_cores": {
                    st: statistics.median(r.get("background_cores", float("nan")) for r in w[st])
                    for st in ("alone", "contended")
                },
            }
        results[workload] = res
        summary = {k: {m: round(v[m], 3) for m in ("ratio", "alone_ms", "contended_ms")} for k, v in res.items()}
        print(json.dumps(summary), flush=True)
    record = {"competitors": args.competitors, "seconds": args.seconds, "repeat": args.repeat, "results": results}
    md = _markdown(record)
    if not args.no_write:
        write_results("contention", record, md)
    print(md)


def _wait_label(wk: dict) -> str:
    if wk.get("OMP_WAIT_POLICY"):
        return wk["OMP_WAIT_POLICY"]
    if wk.get("GOMP_SPINCOUNT"):
        return f"spin {int(wk['GOMP_SPINCOUNT']):,}, then sleep"
    return "(libgomp default: spin 300,000)"


def _markdown(record: dict) -> str:
    rows = []
    for workload, res in record["results"].items():
        base = res.get("default")
        for name, r in res.items():
            wk = r["worker"]
            rows.append(
                {
                    "workload": workload,
                    "config": name,
                    "threads": wk["threads"],
                    "wait policy": _wait_label(wk),
                    "alone ms": r["alone_ms"],
                    "contended ms": r["contended_ms"],
                    "worst ms": r["contended_worst_ms"],
                    "ratio": r["ratio"],
                    "speed vs default alone": r["alone_per_s"] / base["alone_per_s"] if base else "",
                    "speed vs default contended": r["contended_per_s"] / base["contended_per_s"] if base else "",
                    "background cores": "{alone:.2f} / {contended:.2f}".format(**r["background_cores"]),
                }
            )
    return (
        "## Contention: throughput next to a competing busy process vs alone\n\n"
        f"`python bench/contention.py` — {record['competitors']} busy-loop process(es) competing; each configuration "
        f"in its own process, alone and contended windows of {record['seconds']:g} s alternated ({record['repeat']} "
        "each, configurations interleaved). ms: median forward time; worst: slowest contended forward; ratio: "
        "contended / alone throughput of the same configuration (goal >= 0.5); speed vs default: throughput / "
        "torch-defaults throughput in the same state; background cores: other processes' CPU use during the alone / "
        "contended windows (median; the machine is only quiet when it is ~0). `default` = torch's defaults (before); "
        "`emovid` = `emovid.utils.threads.configure()` (what the `emovid` command sets, after); `passive` = what "
        "emovid set before (no spinning: every wait goes through the kernel); `spin 300` / `spin 3k`: the spin "
        "counts either side of emovid's.\n\n" + md_table(rows, COLUMNS)
    )


if __name__ == "__main__":
    main()
