"""``emovid analyze`` over many inputs, on the shared batch engine (:mod:`emovid.engine`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from emovid.analyze.classifier import EmotionClassifier
from emovid.analyze.inputs import InputItem, collect_inputs
from emovid.analyze.pipeline import Analysis, AnalyzeOptions, analyze_file
from emovid.engine import Input, Job, read_manifest
from emovid.errors import ConfigError
from emovid.faces.detect import create_detector, detector_device


class AnalyzeJob(Job):
    """``emovid analyze`` on the batch engine: one input = one :func:`analyze_file`, its JSON/CSV/thumbnails."""

    name = "analyze"
    unit = "inputs"
    key = "key"

    def __init__(self, items: Sequence[InputItem], model: str, pretrained, options: AnalyzeOptions, predictors=()):
        self.items = {it.key: it for it in items}
        self.order = [it.key for it in items]
        self.model, self.pretrained, self.opts, self.predictors = model, pretrained, options, list(predictors)
        self.classifier: EmotionClassifier | None = None
        self.detector = None
        self.mesh = None

    def outputs_exist(self, item: Input, entry: dict) -> bool:
        return (self.out / f"{item.id}.json").exists()

    def setup(self, device) -> None:
        import torch

        self.classifier = EmotionClassifier(
            self.model, pretrained=self.pretrained, device=str(device), align=self.opts.align, flip=self.opts.flip
        )
        self.detector = create_detector(
            self.opts.detector, redetect_every=self.opts.redetect_every, **detector_device(self.opts.detector, device)
        )
        if self.opts.landmarks == "full":  # once per rank, not per input: it loads the face-mesh weights
            from emovid.faces.facemesh import FaceMesh

            self.mesh = FaceMesh(device=str(device))
        if self.predictors and torch.device(device) != self.predictors[0].device:  # a rank of a multi-device run
            from emovid import load

            self.predictors = [load(p.run, device=str(device)) for p in self.predictors]

    def process(self, item: Input, loaded) -> Analysis:
        assert self.classifier is not None
        it = self.items[item.id]
        return analyze_file(
            it.path, self.classifier, self.opts, detector=self.detector, kind=it.kind, predictors=self.predictors,
            mesh=self.mesh,
        )  # fmt: skip

    def damage(self, result: Analysis) -> dict | None:
        return result.result.get("damaged")

    def write(self, item: Input, result: Analysis, out: Path) -> dict:
        from emovid.analyze import report

        written = report.write_result(out, item.id, result.result, result.thumbnails)
        return {"input": str(item.path), "kind": written.get("kind"), "summary": written.get("summary", {})}

    def finish(self, out: Path, manifest: dict[str, dict], failures: dict[str, dict]) -> None:
        from emovid.analyze import report

        entries = []
        for key in self.order:
            if key in manifest:
                entries.append({"key": key, "json": out / f"{key}.json"})
            elif key in failures:
                entries.append({"key": key, "input": failures[key].get("input"), "error": failures[key]["error"]})
        self.report = report.write_report(out, entries)


def analyze_inputs(
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    model: str = "fer_mini_xception",
    pretrained: str | bool | None = True,
    options: AnalyzeOptions | None = None,
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    engine_options: dict | None = None,
) -> dict:
    """Analyse files and folders into ``output_dir`` and write the run's ``report.html``.

    Per input ``KEY`` (see :func:`collect_inputs`): ``KEY.json``, ``KEY.csv`` and ``KEY.faces.jpg`` (face
    thumbnails, absent when no face was found). Runs on the shared batch engine (:mod:`emovid.engine`):
    finished inputs (``manifest.jsonl`` + their JSON) are skipped unless ``options.overwrite``; an input that fails
    is recorded in ``failures.jsonl`` and the run goes on; failed inputs are retried on the next run.

    Args:
        checkpoint: one or more ``emovid train`` run folders (any task but retrieval): each scores every video and
            its record joins ``summary["tasks"][TASK]`` (and the report); fusion and personality runs also fill
            ``summary["personality"]``.
        engine_options: extra :func:`emovid.engine.run` options (``devices``, ``num_nodes``, ``strategy``, ...);
            ``device`` picks one device otherwise.

    Returns:
        ``{"inputs", "done", "skipped", "failed", "output_dir", "report", "failures", "results": [summaries],
        "recorder"}``; each summary also has the input's ``input``, ``key`` and ``kind`` (video/image).

    Raises:
        InputNotFoundError: an argument does not exist.
        ModelError: the model cannot be built or is not a classifier.
        ConfigError: bad options or a checkpoint that is not a fusion checkpoint.
    """
    from emovid.engine import device_options
    from emovid.engine import run as run_batch

    opts = options or AnalyzeOptions()
    out = Path(output_dir)
    ignored: list[tuple[Path, str]] = []
    items = collect_inputs(inputs, ignored)
    runs = [] if checkpoint is None else [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)
    predictors = []
    if runs:
        from emovid import load

        predictors = [load(r, device=device) for r in runs]
        tasks = [p.task for p in predictors]
        dup = next((t for t in tasks if tasks.count(t) > 1), None)
        if dup:
            raise ConfigError(f"two --checkpoint runs of the task {dup!r}; give one run per task")
    if not isinstance(pretrained, bool) and pretrained is not None:
        from emovid.models import create_model

        create_model(model, pretrained=pretrained)  # a bad weights file is the run's error, not each input's
    job = AnalyzeJob(items, model, pretrained, opts, predictors)
    job.out = out
    job.report = out / "report.html"
    rec = run_batch(
        job,
        [Input(it.key, it.path) for it in items],
        out,
        overwrite=opts.overwrite,
        strict=opts.strict,
        ignored=ignored,
        progress=opts.progress and len(items) > 1,
        **{**device_options(device), **(engine_options or {})},
    )
    if rec.rank:  # another rank of a distributed run: rank 0 reports
        return {**rec.to_dict(), "inputs": len(items), "output_dir": str(out), "results": [], "recorder": rec}
    manifest = read_manifest(out, job.key)
    results = []
    for key in job.order:
        entry = manifest.get(key)
        if entry is not None:
            kind = entry.get("kind") or job.items[key].kind  # manifests written before "kind" was recorded
            results.append({"input": entry.get("input"), "key": key, "kind": kind, **entry.get("summary", {})})
    return {
        **rec.to_dict(),
        "inputs": len(items),
        "output_dir": str(out),
        "report": str(job.report),
        "results": results,
        "recorder": rec,
    }


__all__ = ["AnalyzeJob", "analyze_inputs"]
