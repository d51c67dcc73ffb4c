"""Run the malformed-input corpus (tests/hostile.py) through the batch commands and print outcome counts.

Families x commands x outcome, as a Markdown table. Run it on any checkout to compare before and after::

    PYTHONPATH=/path/to/checkout/src python tools/hostile_table.py [--work DIR]

Outcomes per case: ``ok`` (processed cleanly), ``warned`` (processed with a damage record, or left out of a
folder scan with a warning), ``failed`` (recorded with a one-line reason), ``silent`` (structurally damaged but
processed without a word), ``bug`` (lost from the batch, a traceback, exit 3 or a hang).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("EMOVID_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hostile import build_video_corpus, run_cli  # noqa: E402

COMMANDS = {
    "analyze": ["analyze", "{V}", "-o", "{O}", "--no-progress", "--fps", "4"],
    "extract": [
        "extract",
        "--model",
        "test_x3d",
        "--video-root",
        "{V}",
        "-o",
        "{O}",
        "--num-workers",
        "0",
        "--no-progress",
        "--accelerator",
        "cpu",
        "--devices",
        "1",
    ],  # fmt: skip
    "faces embed": [
        "faces",
        "embed",
        "--split",
        "train",
        "--base_path",
        "{V}",
        "--output_root",
        "{O}",
        "--model",
        "test_emonext",
        "--pretrained",
        "none",
        "--num-crops",
        "4",
        "--no-progress",
    ],  # fmt: skip
    "index build": ["index", "build", "--videos", "{V}", "-o", "{O}", "--zero-shot", "--no-progress"],
}


def _jsonl(path: Path, key: str) -> dict[str, dict]:
    out = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                out[os.path.basename(rec[key])] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return out


def _done(cmd: str, out: Path, cases) -> tuple[dict[str, dict], dict[str, dict]]:
    if cmd == "analyze":
        done = {}
        for p in out.rglob("*.json"):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                done[os.path.basename(rec["input"])] = rec
            except (ValueError, KeyError, TypeError, OSError):
                continue
        return done, _jsonl(out / "failures.jsonl", "input")
    if cmd == "extract":
        return _jsonl(out / "manifest.jsonl", "video"), _jsonl(out / "failures.jsonl", "video")
    if cmd == "faces embed":
        import torch

        stems = {Path(c.name).stem: c.name for c in cases}
        done = {}
        for p in (out / "train").glob("*.pt"):
            done[stems.get(p.stem, p.name)] = torch.load(p, weights_only=True)
        return done, _jsonl(out / "train" / "failures.jsonl", "video")
    return _jsonl(out / "meta.jsonl", "path"), _jsonl(out / "failures.jsonl", "video")


def classify(case, res, done, failures) -> str:
    if res.hang or res.rc not in (0, 1) or "Traceback" in res.err:
        return "bug"
    if case.special:
        if case.name in done or case.name in failures:
            return "failed" if case.name in failures else "bug"
        return "warned" if "not read" in res.err else "bug"
    if case.name in failures:
        return "bug" if failures[case.name]["error"].startswith("unexpected") else "failed"
    if case.name in done:
        if done[case.name].get("damaged"):
            return "warned"
        return "silent" if case.damaged else "ok"
    return "bug"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hostile-"))
    cases = build_video_corpus(work / "videos", work / "src")
    counts: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for cmd, argv in COMMANDS.items():
        out = work / f"out_{cmd.replace(' ', '_')}"
        res = run_cli([a.replace("{V}", str(work / "videos")).replace("{O}", str(out)) for a in argv], 600)
        done, failures = _done(cmd, out, cases)
        for c in cases:
            counts[(c.family, cmd)][classify(c, res, done, failures)] += 1
        print(f"{cmd}: exit {res.rc}{' (hang)' if res.hang else ''}", file=sys.stderr)
    for c in cases:
        res = run_cli(["probe", str(work / "videos" / c.name)], 20)
        text = (res.out + res.err).lower()
        if res.hang or res.rc not in (0, 1) or "traceback" in text or "unexpected" in text:
            kind = "bug"
        elif res.rc == 1:
            kind = "failed"
        elif "warning" in text or "damaged" in text:
            kind = "warned"
        else:
            kind = "silent" if c.damaged else "ok"
        counts[(c.family, "probe")][kind] += 1
    families = list(dict.fromkeys(c.family for c in cases))
    cmds = [*COMMANDS, "probe"]
    print("| family (cases) | " + " | ".join(cmds) + " |")
    print("|---|" + "---|" * len(cmds))
    for fam in families:
        n = sum(1 for c in cases if c.family == fam)
        cells = []
        for cmd in cmds:
            cnt = counts[(fam, cmd)]
            cells.append(", ".join(f"{k} {v}" for k, v in sorted(cnt.items())))
        print(f"| {fam} ({n}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
