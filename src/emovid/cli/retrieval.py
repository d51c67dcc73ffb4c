"""``emovid index build|add``, ``emovid search``, ``emovid plot tsne``, ``emovid serve``, ``emovid eval retrieval``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emovid.cli import app
from emovid.cli._batch import finish

index_app = typer.Typer(help="Build or extend a FAISS video index for text search.", no_args_is_help=True)
plot_app = typer.Typer(help="Plots.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate trained checkpoints.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(plot_app, name="plot")
app.add_typer(eval_app, name="eval")


def _embedder(model: str | None, zero_shot: bool, emotion_weight: float, video_emotions: bool, device: str):
    from emovid.errors import ConfigError
    from emovid.retrieval.embed import ModelEmbedder, ZeroShotEmbedder

    if model and zero_shot:
        raise ConfigError("give --model CHECKPOINT or --zero-shot, not both")
    if model:
        return ModelEmbedder(model, video_emotions=video_emotions, device=device)
    return ZeroShotEmbedder(emotion_weight=emotion_weight, video_emotions=video_emotions, device=device)


def _index_run(add: bool, videos, manifest, video_root, output, model, zero_shot, kind, nlist, nprobe, hnsw_m,
               ef_search, batch_size, emotion_weight, video_emotions, device, progress, strict) -> int:  # fmt: skip
    from emovid.errors import ConfigError
    from emovid.retrieval.embed import build_index, collect_videos
    from emovid.retrieval.index import INFO_FILE, IndexSpec, VideoIndex

    ignored: list = []
    items, roots = collect_videos(videos, manifest, video_root, ignored)
    if add:
        old = VideoIndex.open(output)
        if model is None and not zero_shot:
            if old.mode == "model":
                model = old.info["encoder"]["checkpoint"]
            else:
                zero_shot = True
        spec = IndexSpec(**old.info["spec"])
        emotion_weight = float(old.info["encoder"].get("emotion_weight", emotion_weight))
    else:
        if (Path(output) / INFO_FILE).exists() and not (Path(output) / "index.faiss").exists():
            typer.echo(f"resuming the unfinished build in {output}", err=True)
        elif (Path(output) / INFO_FILE).exists():
            raise ConfigError(f"{output} already holds an index; use emovid index add, or another --output")
        spec = IndexSpec(kind=kind, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search)
    emb = _embedder(model, zero_shot, emotion_weight, video_emotions, device)
    typer.echo(emb.describe(), err=True)
    summary = build_index(
        output, items, roots, emb, spec, batch_size=batch_size, progress=progress, strict=strict, ignored=ignored
    )
    return finish(summary["recorder"], output, extra=f"; index holds {summary['count']} videos ({summary['mode']})")


@index_app.command("build")
def index_build(
    output: Path = typer.Option(..., "--output", "-o", help="Index folder to create (an unfinished one resumes)."),
    videos: Path | None = typer.Option(None, "--videos", help="Folder of videos (searched recursively)."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Caption JSON / MSR-VTT CSV / JSON lines."),
    video_root: Path | None = typer.Option(None, "--video-root", help="Folder manifest paths are relative to."),
    model: str | None = typer.Option(None, "--model", help="A trained retrieval checkpoint folder."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Offline zero-shot mode (the default without --model)."),
    kind: str = typer.Option("flat", "--kind", help="flat (exact) | ivf | hnsw"),
    nlist: int | None = typer.Option(None, "--nlist", help="ivf: cells (default 4 sqrt(n))."),
    nprobe: int = typer.Option(32, "--nprobe", help="ivf: cells searched per query."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="hnsw: links per node."),
    ef_search: int = typer.Option(128, "--ef-search", help="hnsw: search breadth."),
    batch_size: int = typer.Option(16, "--batch-size"),
    emotion_weight: float = typer.Option(1.0, "--emotion-weight", help="zero-shot: weight of the emotion term."),
    video_emotions: bool = typer.Option(
        True, "--video-emotions/--no-video-emotions", help="Estimate emotions of videos without caption scores."
    ),
    device: str = typer.Option("cpu", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: index what decodes, with a warning)."
    ),
) -> int:
    """Embed videos into a new FAISS index (resumable: rerun to finish an interrupted build)."""
    return _index_run(False, videos, manifest, video_root, output, model, zero_shot, kind, nlist, nprobe, hnsw_m,
                      ef_search, batch_size, emotion_weight, video_emotions, device, progress, strict)  # fmt: skip


@index_app.command("add")
def index_add(
    index: Path = typer.Option(..., "--index", "--output", "-o", help="Existing index folder."),
    videos: Path | None = typer.Option(None, "--videos"),
    manifest: Path | None = typer.Option(None, "--manifest"),
    video_root: Path | None = typer.Option(None, "--video-root"),
    batch_size: int = typer.Option(16, "--batch-size"),
    video_emotions: bool = typer.Option(True, "--video-emotions/--no-video-emotions"),
    device: str = typer.Option("cpu", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    strict: bool = typer.Option(
        False, "--strict", help="Fail damaged videos (default: index what decodes, with a warning)."
    ),
) -> int:
    """Append videos to an index with the encoder it was built with (videos already in it are skipped)."""
    return _index_run(True, videos, manifest, video_root, index, None, False, "flat", None, 32, 32, 128, batch_size,
                      1.0, video_emotions, device, progress, strict)  # fmt: skip


@app.command()
def search(
    query: str | None = typer.Argument(None, help="What the video should show or feel (or --queries FILE)."),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder."),
    queries: Path | None = typer.Option(
        None, "--queries", help="With --compare: a file of queries (one a line, 'QUERY | EMOTION,...'; or JSON)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="--queries: also write the table (.csv/.json)."),
    emotion: list[str] = typer.Option([], "--emotion", "-e", help="Emotion term (repeatable; default: from text)."),
    filter_emotion: list[str] = typer.Option([], "--filter", help="Keep videos showing this emotion (repeatable)."),
    k: int = typer.Option(10, "--k", "-k"),
    no_emotion: bool = typer.Option(False, "--no-emotion", help="Drop the emotion term."),
    compare: bool = typer.Option(False, "--compare", help="Ranking with vs without the emotion term."),
    as_json: bool = typer.Option(False, "--json"),
    device: str = typer.Option("cpu", "--device"),
) -> int:
    """Search an index by text."""
    from emovid.errors import ConfigError
    from emovid.retrieval.search import Searcher, read_queries

    if queries is not None and not compare:
        raise ConfigError("--queries FILE goes with --compare")
    if (query is None) == (queries is None):
        raise ConfigError("give a query text, or --compare --queries FILE (not both)")
    todo = read_queries(queries) if queries is not None else None
    s = Searcher(index, device=device)
    typer.echo(s.describe(), err=True)
    if todo is not None:
        rows = s.compare_queries(todo, k=k)
        if output:
            _write_table(output, rows)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            typer.echo(_compare_table(rows, k))
        return 0
    if compare:
        out = s.compare(query, k=k, emotions=emotion)
        if as_json:
            typer.echo(json.dumps(out, indent=2))
            return 0
        terms = ", ".join(out["emotions"])
        typer.echo(f"query {out['query']!r}; emotion term: {terms} ({out['emotion_source']})")
        # Say in each column header which ranking holds the emotion term: "with"/"without" alone left users guessing.
        left, right = f"with emotion term ({terms})", "without (query text only)"
        width = max(28, len(left) + 2)
        typer.echo(f"{'rank':>4}  {left:<{width}}{right}")
        for a, b in zip(out["with"], out["without"], strict=True):
            typer.echo(f"{a['rank']:>4}  {str(a['video_id']):<{width}}{b['video_id']}")
        for e, v in out["summary"].items():
            typer.echo(
                f"{e}: {v['videos']} videos showing it; without the term -> with it: precision@{k} "
                f"{v['precision_at_k_without']:.2f} -> {v['precision_at_k_with']:.2f}, mean rank "
                f"{_f(v['mean_rank_without'])} -> {_f(v['mean_rank_with'])}"
            )
        return 0
    res = s.search(query, k=k, emotions=emotion, filter_emotions=filter_emotion, use_emotion=not no_emotion)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return 0
    typer.echo(f"emotion term: {', '.join(res.emotions) or 'none'} ({res.emotion_source})")
    for h in res.hits:
        emo = ",".join(h["dominant"]) or "-"
        typer.echo(f"{h['rank']:>3}  {h['score']:.4f}  {h['path']}  [{emo}]  {h['caption']}")
    return 0


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


#: Column headers of the --compare --queries table: which side holds the emotion term is in every name.
COMPARE_COLUMNS = (
    ("query", "query"),
    ("emotions", "emotion term"),
    ("videos_with_emotion", "videos with it"),
    ("p_at_k_with_term", "P@{k} with term"),
    ("p_at_k_without_term", "P@{k} without term"),
    ("mean_rank_with_term", "mean rank with term"),
    ("mean_rank_without_term", "mean rank without term"),
    ("mean_rank_change", "rank change (without - with; + = up)"),
)


def _cell(key: str, v) -> str:
    if isinstance(v, list):
        return ",".join(v)
    if v is None:
        return "-"
    if key.startswith("p_at_k"):
        return f"{v:.2f}"
    if key.startswith("mean_rank"):
        return f"{v:+.1f}" if key == "mean_rank_change" else f"{v:.1f}"
    return str(v)


def _compare_table(rows: list[dict], k: int) -> str:
    heads = [h.format(k=k) for _, h in COMPARE_COLUMNS]
    cells = [[_cell(key, r[key]) for key, _ in COMPARE_COLUMNS] for r in rows]
    width = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    width[0] = min(width[0], 48)

    def line(xs: list[str]) -> str:
        return "  ".join(x[: width[i]].ljust(width[i]) if i < 2 else x.rjust(width[i]) for i, x in enumerate(xs))

    return "\n".join([line(heads), *(line(c) for c in cells)])


def _write_table(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    from emovid.utils.io import atomic_open, write_json

    if path.suffix.lower() == ".json":
        write_json(path, rows)
        return
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = [key for key, _ in COMPARE_COLUMNS]
    w.writerow(keys)
    for r in rows:
        w.writerow([";".join(r[x]) if isinstance(r[x], list) else ("" if r[x] is None else r[x]) for x in keys])
    with atomic_open(path) as f:
        f.write(buf.getvalue())


@plot_app.command("tsne")
def plot_tsne(
    index: Path | None = typer.Option(None, "--index", "-i", help="Index folder."),
    checkpoint: list[Path] = typer.Option(
        [], "--checkpoint", "-c", help="Retrieval checkpoint (repeat: panels side by side, e.g. before / after)."
    ),
    data: Path | None = typer.Option(None, "--data", help="--checkpoint: captions (default: the first's val split)."),
    video_root: Path | None = typer.Option(None, "--video-root", help="--checkpoint: folder of --data's videos."),
    output: Path = typer.Option(Path("tsne.png"), "--output", "-o", help="PNG file."),
    query: list[str] = typer.Option([], "--query", "-q", help="--index: extra text queries to place (repeatable)."),
    captions: bool = typer.Option(True, "--captions/--no-captions", help="Also place the videos' caption embeddings."),
    perplexity: float = typer.Option(30.0, "--perplexity"),
    seed: int = typer.Option(0, "--seed"),
) -> int:
    """t-SNE of video (and caption/query) embeddings coloured by emotion, saved as PNG.

    Either one index (--index), or checkpoints (--checkpoint A --checkpoint B) embedding the same videos, drawn
    side by side.
    """
    from emovid.errors import ConfigError

    if (index is None) == (not checkpoint):
        raise ConfigError("give --index DIR or --checkpoint DIR (repeatable), not both")
    if checkpoint:
        if query:
            raise ConfigError("--query goes with --index")
        from emovid.retrieval.tsne import plot_checkpoints_tsne

        info = plot_checkpoints_tsne(checkpoint, output, data, video_root, captions, perplexity, seed)
    else:
        from emovid.retrieval.tsne import plot_index_tsne

        info = plot_index_tsne(index, output, queries=query, captions=captions, perplexity=perplexity, seed=seed)
    typer.echo(json.dumps(info))
    return 0


@app.command()
def serve(
    index: Path = typer.Option(..., "--index", "-i", help="Index folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = typer.Option(8000, "--port"),
) -> int:
    """Serve the recommend-videos page and its JSON API (/api, OpenAPI at /docs)."""
    import uvicorn

    from emovid.retrieval.app import create_app

    application = create_app(index)
    typer.echo(f"{application.state.searcher.describe()}; http://{host}:{port}/", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")
    return 0


@eval_app.command("retrieval")
def eval_retrieval(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A retrieval checkpoint folder."),
    data: Path | None = typer.Option(None, "--data", help="Caption file (default: the checkpoint's validation split)."),
    video_root: Path | None = typer.Option(None, "--video-root"),
    query: str = typer.Option("a person", "--query", help="Emotion-free text for the emotion ranking shift."),
    k: int = typer.Option(10, "--k"),
    batch_size: int = typer.Option(16, "--batch-size"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the metrics JSON here."),
) -> int:
    """t2v / v2t R@1/5/10, median and mean rank with and without the emotion term, and the ranking shift.

    Ranks are pessimistic: an item scoring the same as the right one counts as ranked ahead of it.
    """
    from emovid.retrieval.evaluate import evaluate_checkpoint
    from emovid.utils.io import write_json

    out = evaluate_checkpoint(checkpoint, data, video_root, query=query, k=k, batch_size=batch_size)
    if output:
        write_json(output, out)
    typer.echo(json.dumps(out, indent=2))
    return 0
