"""Model zoo: parameters, GFLOPs and CPU forward latency of every registered model, and X3D-S vs pytorchvideo.

For each registered (non-``test_*``) model, built with random weights in eval mode at its native clip geometry
(``pretrained_cfg``: ``[B, C, T, H, W]`` for video models, ``[B, C, H, W]`` when ``num_frames == 1``):

* parameters;
* GFLOPs of one forward at batch 1, counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per
  multiply-add; X3D papers quote multiply-adds, half of this);
* forward latency under ``torch.inference_mode`` at batch 1 and 8 (median and min of ``--repeat`` runs).

X3D-S is also measured side by side with pytorchvideo's ``create_x3d(input_clip_length=13, input_crop_size=160)``:
both in one process with the same weights and input, alternating run by run (so load from other processes hits
both alike); ``speed ratio`` = their time / our time (> 1: emovid is faster). pytorchvideo cannot live in the
project environment (it wants torchvision, whose PyPI build breaks CPU torch), so when it is not importable here
the comparison runs in a scratch environment given by ``--ref-python`` (or ``$EMOVID_PYTORCHVIDEO_PYTHON``): this
script calls itself there with ``--pytorchvideo-worker``, importing emovid from this source tree (its model code
needs only torch and numpy) and stubbing torchvision. Make one with::

    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install torch==2.13.0 numpy portalocker tabulate termcolor yacs pyyaml tqdm
    /tmp/ref/bin/pip install --no-deps pytorchvideo==0.1.5 fvcore iopath

Run: ``python bench/models.py [--models 'x3d_*'] [--quick] [--ref-python /tmp/ref/bin/python]``.
A filtered run keeps the other models' rows from the previous ``bench/results/models.json``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LOAD_LIMIT, OTHERS_LIMIT, RESULTS, md_table, timeit  # noqa: E402

X3D_S_REF = {"input_clip_length": 13, "input_crop_size": 160}
X3D_S_SHAPE = (3, 13, 160, 160)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward (2 per multiply-add) as counted by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def latency(model: torch.nn.Module, x: torch.Tensor, repeat: int, warmup: int) -> dict:
    def run():
        with torch.inference_mode():
            model(x)

    t = timeit(run, repeat=repeat, warmup=warmup)
    return {"median_ms": 1000 * t["median_s"], "min_ms": 1000 * t["min_s"], "runs": t["runs"]}


def example_input(cfg, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    h, w = cfg.input_size
    shape = (batch, cfg.in_chans, h, w) if cfg.num_frames == 1 else (batch, cfg.in_chans, cfg.num_frames, h, w)
    return torch.randn(shape, generator=generator)


# ---- pytorchvideo reference (runs in whichever environment has pytorchvideo) ------------------------------------


def _stub_torchvision() -> None:
    # pytorchvideo imports torchvision.ops.RoIAlign and torchvision.transforms at import time, for parts X3D
    # does not use; stubs let it import where torchvision is absent.
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        sys.modules.pop("torchvision", None)
    tv, ops, tr = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.transforms"))
    ops.RoIAlign = type("RoIAlign", (), {})
    tv.ops, tv.transforms = ops, tr
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.transforms": tr})


def pytorchvideo_x3d_s():
    """pytorchvideo's X3D-S (random weights, eval) or raise ImportError."""
    _stub_torchvision()
    from pytorchvideo.models.x3d import create_x3d

    return create_x3d(**X3D_S_REF).eval()


def compare_x3d_s(batches: list[int], repeat: int, warmup: int) -> dict:
    """Time emovid's and pytorchvideo's X3D-S in this process, alternating them run by run on the same input.

    Both models get the same random weights (ours loads pytorchvideo's state dict strictly) and their outputs are
    checked to agree, so the comparison is of the same computation.
    """
    import statistics
    import time

    import pytorchvideo

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # emovid from this tree
    from emovid.models import create_model

    theirs = pytorchvideo_x3d_s()
    ours = create_model("x3d_s").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    out = {
        "reference": f"pytorchvideo {getattr(pytorchvideo, '__version__', '?')} create_x3d(**{X3D_S_REF})",
        "python": sys.executable,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": {"emovid": _params(ours), "pytorchvideo": _params(theirs)},
        "gflops": {
            "emovid": count_flops(ours, torch.randn(1, *X3D_S_SHAPE)) / 1e9,
            "pytorchvideo": count_flops(theirs, torch.randn(1, *X3D_S_SHAPE)) / 1e9,
        },
        "batches": {},
    }
    for b in batches:
        x = torch.randn(b, *X3D_S_SHAPE, generator=torch.Generator().manual_seed(b))
        runs = {"emovid": lambda x=x: ours(x), "pytorchvideo": lambda x=x: theirs(x)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            # pytorchvideo ends in softmax, emovid returns logits
            max_diff = float((ours(x).softmax(-1) - theirs(x)).abs().max())
            for _ in range(warmup):
                for f in runs.values():
                    f()
            for i in range(repeat):
                order = list(runs) if i % 2 == 0 else list(reversed(runs))  # neither always goes first
                for k in order:
                    t0 = time.perf_counter()
                    runs[k]()
                    times[k].append(time.perf_counter() - t0)
        med = {k: 1000 * statistics.median(v) for k, v in times.items()}
        low = {k: 1000 * min(v) for k, v in times.items()}
        out["batches"][str(b)] = {
            "emovid_median_ms": med["emovid"],
            "pytorchvideo_median_ms": med["pytorchvideo"],
            "emovid_min_ms": low["emovid"],
            "pytorchvideo_min_ms": low["pytorchvideo"],
            "speed_ratio_median": med["pytorchvideo"] / med["emovid"],
            "speed_ratio_min": low["pytorchvideo"] / low["emovid"],
            "max_prob_diff": max_diff,
            "runs": repeat,
        }
    return out


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _worker(args) -> None:
    res = compare_x3d_s(args.batch_list, args.repeat, args.warmup)
    print("PYTORCHVIDEO_RESULT " + json.dumps(res))


def run_comparison(ref_python: str | None, args) -> dict:
    """X3D-S vs pytorchvideo here if it imports, else in ``ref_python`` (a scratch environment) by subprocess."""
    try:
        pytorchvideo_x3d_s()
    except Exception as e:  # ImportError, or a broken torchvision
        if not ref_python:
            return {
                "error": f"pytorchvideo is not installed here ({type(e).__name__}: {e})",
                "how": "make a scratch venv with pytorchvideo (`pip install torch==2.13.0 portalocker tabulate "
                "termcolor yacs pyyaml` then `pip install --no-deps pytorchvideo fvcore iopath`; torchvision is "
                "stubbed) and pass `--ref-python VENV/bin/python`; see the docstring of bench/models.py",
            }
    else:
        return compare_x3d_s(args.batch_list, args.repeat, args.warmup)
    cmd = [
        ref_python, str(Path(__file__).resolve()), "--pytorchvideo-worker", "--threads", str(args.threads),
        "--batches", ",".join(map(str, args.batch_list)), "--repeat", str(args.repeat), "--warmup", str(args.warmup),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PYTORCHVIDEO_RESULT ")), None)
    if p.returncode or line is None:
        return {"error": f"reference run in {ref_python} failed ({p.returncode}): {p.stderr.strip()[-600:]}"}
    return json.loads(line.split(" ", 1)[1])


# ---- emovid models ----------------------------------------------------------------------------------------------


def measure_model(name: str, batches: list[int], repeat: int, warmup: int) -> dict:
    from emovid.models import create_model

    model = create_model(name).eval()
    cfg = model.pretrained_cfg
    g = torch.Generator().manual_seed(0)
    row = {
        "model": name,
        "params_m": _params(model) / 1e6,
        "clip": (f"{cfg.num_frames}x{cfg.frame_stride} " if cfg.num_frames > 1 else "")
        + f"{cfg.input_size[0]}x{cfg.input_size[1]}",
        "gflops": count_flops(model, example_input(cfg, 1, g)) / 1e9,
    }
    for b in batches:
        t = latency(model, example_input(cfg, b, g), repeat, warmup)
        row[f"b{b}_ms"] = t["median_ms"]
        row[f"b{b}_min_ms"] = t["min_ms"]
    return row


def _markdown(rows: list[dict], batches: list[int], cmp: dict, args) -> str:
    cols = ["model", "params_m", "clip", "gflops"] + [f"b{b}_ms" for b in batches]
    cols += ["load_1m", "others_cores", "under_load"]
    lines = [
        "## Model zoo: size, FLOPs and CPU forward latency",
        "",
        "`python bench/models.py` — random weights, eval mode, `torch.inference_mode`, native clip geometry "
        f"(frames x stride, H x W), {args.threads} threads. GFLOPs: `FlopCounterMode` at batch 1 "
        "(2 FLOPs per multiply-add). Latency: median ms of one forward "
        f"({args.repeat} runs after {args.warmup} warm-up; OMP_WAIT_POLICY "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}). A busy machine inflates these absolute times (see the load "
        "line below; rerun a run marked as taken under load on a quiet machine); the side-by-side ratio below is "
        "measured alternately in one process and is the robust figure. Per row: load_1m, the 1-min load average "
        "when the row started (it includes this bench's own earlier rows); others_cores, the CPU other processes "
        f"used while the row was measured; under_load: others_cores > {OTHERS_LIMIT} x cores (or, for rows kept "
        f"from a run that did not record it, that run's starting load > {LOAD_LIMIT} x cores).",
        "",
        md_table(rows, cols),
        "",
    ]
    if "batches" in cmp:
        lines += [
            "### X3D-S: emovid vs pytorchvideo",
            "",
            (f"{cmp['note'][0].upper()}{cmp['note'][1:]}. " if cmp.get("note") else "")
            + f"Reference: {cmp['reference']}, torch {cmp['torch']}, {cmp['threads']} threads. Same weights and "
            f"input (Bx3x13x160x160), one process, alternating emovid/reference run by run "
            f"({cmp['batches'][next(iter(cmp['batches']))]['runs']} runs each); ratio = reference time / emovid "
            "time (> 1: emovid faster). "
            f"Params {cmp['params']['emovid']:,} vs {cmp['params']['pytorchvideo']:,}; "
            f"GFLOPs {cmp['gflops']['emovid']:.3f} vs {cmp['gflops']['pytorchvideo'] or float('nan'):.3f}.",
            "",
            md_table(
                [{"batch": b, **v} for b, v in cmp["batches"].items()],
                ["batch", "emovid_median_ms", "pytorchvideo_median_ms", "speed_ratio_median", "speed_ratio_min"],
            ),
        ]
    elif cmp:
        lines += ["### X3D-S: emovid vs pytorchvideo", "", f"Not measured: {cmp.get('error')}. {cmp.get('how')}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="*", help="comma-separated globs over registered names (default all)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8; --quick: 1)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 5; --quick: 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--quick", action="store_true", help="fewer runs and batch 1 only: a smoke test")
    ap.add_argument("--ref-python", default=os.environ.get("EMOVID_PYTORCHVIDEO_PYTHON"))
    ap.add_argument("--no-compare", action="store_true", help="skip the pytorchvideo comparison")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results and BENCHMARKS.md alone")
    ap.add_argument(
        "--refuse-under-load",
        action="store_true",
        help="stop when the 1-min load average exceeds half the cores (also EMOVID_BENCH_REFUSE_LOAD=1); "
        "otherwise a busy run is measured and marked as taken under load",
    )
    ap.add_argument("--pytorchvideo-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.batches = args.batches or ("1" if args.quick else "1,8")
    args.batch_list = [int(b) for b in args.batches.split(",")]
    args.repeat = args.repeat or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    args.load = os.getloadavg()[0]
    if args.pytorchvideo_worker:
        torch.set_num_threads(args.threads)
        _worker(args)
        return 0

    from _common import LOAD, LoadMonitor, refuse_if_loaded, write_results
    from emovid.models import list_models

    refuse_if_loaded(args.refuse_under_load or None)
    if LOAD.loaded_at_start():
        print(
            f"warning: 1-min load average {LOAD.before[0]:.2f} on {LOAD.cores} cores: the machine is busy, these "
            "latencies will be inflated and the results are marked as taken under load",
            file=sys.stderr,
        )

    globs = [g.strip() for g in args.models.split(",") if g.strip()]
    names = [n for n in list_models(include_test=False) if any(fnmatch.fnmatch(n, g) for g in globs)]
    rows = []
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        # Per row (a filtered rerun keeps older rows): the 1-min load at its start (which includes this bench's own
        # earlier rows) and the CPU other processes used while it was measured, which marks it.
        load_1m, mon = round(os.getloadavg()[0], 2), LoadMonitor()
        try:
            row = measure_model(name, args.batch_list, args.repeat, args.warmup)
        except Exception as e:  # one broken model should not hide the others' figures
            row = {"model": name, "error": f"{type(e).__name__}: {e}"}
        others = mon.others_cores()
        row["load_1m"] = load_1m
        row["others_cores"] = None if others is None else round(others, 2)
        busy = others > OTHERS_LIMIT * LOAD.cores if others is not None else load_1m > LOAD_LIMIT * LOAD.cores
        row["under_load"] = "yes" if busy or (len(rows) == 0 and LOAD.loaded_at_start()) else "no"
        print(json.dumps(row), flush=True)
        rows.append(row)

    prev, prev_cmp = {}, {}
    prev_file = RESULTS / "models.json"
    old = json.loads(prev_file.read_text()) if prev_file.exists() else {}
    if args.models != "*":
        prev = {r["model"]: r for r in old.get("models", [])}
        for r in prev.values():  # rows from before rows recorded their load: the load of that whole run
            if "load_1m" not in r and old.get("load_average") is not None:
                r["load_1m"] = round(float(old["load_average"]), 2)
                r["under_load"] = "yes" if r["load_1m"] > 0.5 * LOAD.cores else "no"
    prev_cmp = old.get("x3d_s_vs_pytorchvideo") or {}
    measured = {r["model"] for r in rows}
    registered = set(list_models(include_test=False))
    rows = sorted(
        rows + [r for n, r in prev.items() if n not in measured and n in registered], key=lambda r: r["model"]
    )

    cmp: dict = {**prev_cmp, "note": "from an earlier run (not remeasured)"} if "batches" in prev_cmp else prev_cmp
    if not args.no_compare and "x3d_s" in names:
        print("measuring x3d_s vs pytorchvideo ...", file=sys.stderr, flush=True)
        cmp = run_comparison(args.ref_python, args)
        print(json.dumps(cmp, indent=1), flush=True)
        if "batches" not in cmp and "batches" in prev_cmp:  # no reference here: keep the last measured comparison
            cmp = {**prev_cmp, "note": f"from an earlier run (not remeasured: {cmp.get('error')})"}

    if not args.no_write:
        data = {
            "threads": args.threads,
            "load_average": args.load,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "repeat": args.repeat,
            "warmup": args.warmup,
            "batches": args.batch_list,
            "models": rows,
            "x3d_s_vs_pytorchvideo": cmp,
        }
        write_results("models", data, _markdown(rows, args.batch_list, cmp, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
