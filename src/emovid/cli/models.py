"""``emovid list-models``: the model zoo with sizes, clip geometry and weight sources."""

from __future__ import annotations

import json

import typer

from emovid.cli import app, err


def _count_params(name: str) -> int:
    """Parameters of a registered model, built on the meta device when possible (no memory, no init cost)."""
    import torch

    from emovid.models import create_model

    try:
        with torch.device("meta"):
            model = create_model(name)
    except Exception:  # a model whose constructor needs real tensors
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def model_rows(pattern: str = "*", include_test: bool = False) -> list[dict]:
    """One dict per registered model matching ``pattern`` (a glob; plain text matches as a substring)."""
    from emovid.models import get_model_entry, list_models

    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    rows = []
    for name in list_models(pattern, include_test=include_test):
        entry = get_model_entry(name)
        cfg = entry.cfg
        weights = {
            tag: {k: v for k, v in src.__dict__.items() if v} | {"default": tag == cfg.default_tag}
            for tag, src in cfg.weights.items()
        }
        rows.append(
            {
                "name": name,
                "family": entry.family,
                "params": _count_params(name),
                "num_frames": cfg.num_frames,
                "frame_stride": cfg.frame_stride,
                "input_size": list(cfg.input_size),
                "short_side": cfg.short_side,
                "in_chans": cfg.in_chans,
                "face_crop": cfg.face_crop,
                "mean": list(cfg.mean),
                "std": list(cfg.std),
                "num_classes": cfg.num_classes,
                "license": cfg.license,
                "source": cfg.source,
                "task": cfg.task,
                "labels": list(cfg.label_names or ()),
                "training_data": cfg.training_data,
                "model_card": cfg.model_card,
                "weights": weights,
            }
        )
    return rows


def _weights_text(row: dict) -> str:
    """``tag=source`` per weight set; URLs shortened to host/.../file (``--json`` has them in full)."""
    from urllib.parse import urlparse

    if not row["weights"]:
        return "-"
    parts = []
    for tag, w in row["weights"].items():
        if w.get("url"):
            u = urlparse(w["url"])
            where = w.get("filename") or u.path.rsplit("/", 1)[-1]
            where = f"{u.netloc}/.../{where}"
        else:
            where = f"hf:{w.get('hf_hub_id')}" + (f"/{w['hf_filename']}" if w.get("hf_filename") else "")
        parts.append(f"{tag}{'*' if w['default'] else ''}={where}")
    return ", ".join(parts)


def format_table(rows: list[dict]) -> str:
    """Aligned text table: name, family, params, clip (frames x stride), input size, face crop, weights."""
    header = ["name", "family", "params", "clip", "input", "face", "weights (*=default: what train/extract load)"]
    body = []
    for r in rows:
        h, w = r["input_size"]
        clip = f"{r['num_frames']}x{r['frame_stride']}" if r["num_frames"] > 1 else "image"
        size = f"{h}x{w}" + (f" (short {r['short_side']})" if r["short_side"] else "")
        body.append(
            [
                r["name"],
                r["family"],
                f"{r['params'] / 1e6:.2f}M",
                clip,
                size,
                "yes" if r["face_crop"] else "no",
                _weights_text(r),
            ]
        )
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for cells in [header, *body]:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + "  " + cells[-1])
    return "\n".join(lines)


@app.command("list-models")
def list_models_cmd(
    pattern: str = typer.Argument("*", help="Glob over model names (plain text matches as a substring)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: one object per model, with weight sources."),
    show_all: bool = typer.Option(False, "--all", help="Include the tiny test_* variants."),
    task: str | None = typer.Option(
        None,
        "--task",
        help="Only models whose pretrained head does this: 'expression' lists the face-expression classifiers "
        "(emovid analyze --model) with their classes, training data, licence and model card.",
    ),
) -> int:
    """List registered models: family, parameters, clip geometry, face crop or full frame, weight sources."""
    rows = model_rows(pattern, include_test=show_all)
    if task:
        rows = [r for r in rows if r["task"] == task]
    if not rows:
        what = f"no model matches {pattern!r}" + (f" with --task {task}" if task else "")
        err(what + ("" if show_all else " (test_* variants need --all)"))
        return 1
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif task == "expression":
        typer.echo(format_expression_table(rows))
    else:
        typer.echo(format_table(rows))
    return 0


def format_expression_table(rows: list[dict]) -> str:
    """One block per face-expression model: classes, input, training data, licence, weights, model card."""
    out = []
    for r in rows:
        h, w = r["input_size"]
        chans = "grey" if r["in_chans"] == 1 else "RGB"
        out.append(f"{r['name']}  ({r['family']}, {r['params'] / 1e6:.2f}M parameters, {h}x{w} {chans} face crop)")
        out.append(f"  classes:   {', '.join(r['labels']) or '-'}")
        out.append(f"  trained on: {r['training_data'] or 'not stated'}")
        out.append(f"  licence:   {r['license'] or 'not stated'}")
        out.append(f"  weights:   {_weights_text(r)}")
        if r["model_card"]:
            out.append(f"  card:      {r['model_card']}")
    return "\n".join(out)
