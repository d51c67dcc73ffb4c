"""Shared benchmark helpers: timing, machine description, load, and updating BENCHMARKS.md in place.

Every benchmark writes ``bench/results/NAME.json`` and replaces its own section of ``BENCHMARKS.md``
(between ``<!-- bench:NAME -->`` markers), so benchmarks can be rerun one at a time.

Load: importing this module notes the load average and the machine's CPU counters; :func:`write_results` adds the
load average before and after the run, and the CPU time *other* processes used while it ran (``/proc/stat`` busy
time minus this process's and its children's), to the JSON (``"load"``) and to the Markdown section. A run is
marked **taken under load** when the 1-minute load average at the start exceeded half the cores, or other
processes used more than a quarter of the cores on average during the run: absolute times from such a run are inflated
(ratios measured side by side in one run are much less affected). ``EMOVID_BENCH_REFUSE_LOAD=1`` (or a bench's
``--refuse-under-load``, see :func:`refuse_if_loaded`) makes a bench stop instead of measuring on a busy machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
#: A run is "under load" when the 1-min load average at its start exceeds this share of the cores ...
LOAD_LIMIT = 0.5
#: ... or when other processes used more than this share of the cores while it ran (measured exactly, and even half
#: a core taken from a 2-thread torch run with libgomp's spin-waiting inflates its times several-fold).
OTHERS_LIMIT = 0.25


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _busy_seconds() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot (``/proc/stat``), or None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """Load average and other processes' CPU use over a benchmark run (see the module notes)."""

    def __init__(self) -> None:
        self.cores = _cores()
        self.before = _loadavg()
        self._t0 = time.monotonic()
        self._busy0 = _busy_seconds()
        self._own0 = _own_seconds()

    def others_cores(self) -> float | None:
        """Cores' worth of CPU other processes used on average since the start (None without /proc/stat)."""
        busy, wall = _busy_seconds(), time.monotonic() - self._t0
        if busy is None or self._busy0 is None or wall <= 0:
            return None
        return max(0.0, (busy - self._busy0) - (_own_seconds() - self._own0)) / wall

    def loaded_at_start(self) -> bool:
        return self.before is not None and self.before[0] > LOAD_LIMIT * self.cores

    def report(self) -> dict:
        others = self.others_cores()
        reasons = []
        if self.loaded_at_start():
            reasons.append(f"1-min load average {self.before[0]:.2f} at the start > {LOAD_LIMIT} x {self.cores} cores")
        if others is not None and others > OTHERS_LIMIT * self.cores:
            reasons.append(f"other processes used {others:.2f} of {self.cores} cores during the run")
        return {
            "cores": self.cores,
            "before": self.before,
            "after": _loadavg(),
            "others_cores": None if others is None else round(others, 3),
            "seconds": round(time.monotonic() - self._t0, 1),
            "under_load": bool(reasons),
            "why": "; ".join(reasons),
        }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


#: Started when a bench imports this module, i.e. before it measures anything.
LOAD = LoadMonitor()


def refuse_if_loaded(refuse: bool | None = None) -> None:
    """Exit with a message (status 1) when the machine is busy at the start and refusing was asked for (``refuse`` or
    ``EMOVID_BENCH_REFUSE_LOAD=1``); otherwise the run goes on and is marked in its results."""
    if refuse is None:
        refuse = os.environ.get("EMOVID_BENCH_REFUSE_LOAD", "") not in ("", "0")
    if refuse and LOAD.loaded_at_start():
        raise SystemExit(
            f"refusing to benchmark: 1-min load average {LOAD.before[0]:.2f} > {LOAD_LIMIT} x {LOAD.cores} cores "
            "(another job holds the CPU); rerun on a quiet machine"
        )


def load_line(load: dict) -> str:
    """One Markdown sentence about the load during a run (from :meth:`LoadMonitor.report`)."""

    def avg(v):
        return "?" if not v else " / ".join(f"{x:.2f}" for x in v)

    others = "" if load.get("others_cores") is None else f"; other processes used {load['others_cores']:.2f} cores"
    text = (
        f"Load average (1 / 5 / 15 min) {avg(load.get('before'))} before, {avg(load.get('after'))} after "
        f"({load['cores']} cores; the run's own work raises the 'after' figure){others} over {load['seconds']:.0f} s."
    )
    if load.get("under_load"):
        text = f"**Taken under load** ({load['why']}): absolute times are inflated. " + text
    return text


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


def timeit(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup + repeat`` times; median and min seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeat}


def write_results(name: str, data: dict, markdown: str) -> None:
    """Save ``data`` as ``bench/results/NAME.json`` and put ``markdown`` in BENCHMARKS.md's NAME section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = LOAD.report()
    data = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d"), "load": load, **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n\n{load_line(load)}\n\n_Machine: {data['machine']}; {data['date']}._\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n\nFigures written by `bench/*.py`.\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def md_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with the given ``columns``."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
