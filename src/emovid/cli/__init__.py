"""The ``emovid`` command line.

Each command group lives in its own module and registers itself on :data:`app`. Commands are thin: parse,
call library functions, print. User-caused failures are :class:`~emovid.errors.EmovidError`; :func:`main`
prints them on one line and exits non-zero (``--debug`` shows the traceback).

The root flags ``--debug``, ``--trust-checkpoint`` and ``--threads N`` are accepted anywhere on the command line
(``emovid analyze v.mp4 --debug`` as well as ``emovid --debug analyze v.mp4``).

CPU threads: :func:`main` calls :func:`emovid.utils.threads.configure` before anything imports torch, so the
thread count (``--threads N`` / ``EMOVID_THREADS``) and OpenMP's wait policy (a brief spin, ``GOMP_SPINCOUNT=1000``,
unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set) are in place when torch's OpenMP runtime starts; a run next to
other busy processes then slows about in proportion to the CPU it gets instead of many-fold (``bench/contention.py``).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import typer

try:  # typer >= 0.17 vendors click; earlier versions use the click package
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc

from emovid import __version__
from emovid.errors import EmovidError, display_path

app = typer.Typer(
    name="emovid",
    help="Read emotion from video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emovid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    trust_checkpoint: bool = typer.Option(
        False,
        "--trust-checkpoint",
        help="Load pickled checkpoints (.pth/.ckpt) that hold more than tensors and plain data. This RUNS CODE "
        "stored in the file: only for files you trust. May follow the subcommand; also EMOVID_TRUST_CHECKPOINT=1.",
    ),
    threads: str = typer.Option(
        None,
        "--threads",
        metavar="N",
        help="CPU threads for torch (default: EMOVID_THREADS, else OMP_NUM_THREADS, else one per core). "
        "Idle threads spin briefly, then sleep (GOMP_SPINCOUNT=1000 unless it or OMP_WAIT_POLICY is set), so runs "
        "share a busy machine gracefully. "
        "May follow the subcommand.",
    ),
) -> None:
    """Read emotion from video."""
    if trust_checkpoint:  # main() takes the flag out of argv; this serves `app` called directly
        from emovid.models.hub import set_trust_checkpoints

        set_trust_checkpoints(True)
    if threads is not None:  # main() applied it before torch loaded; this serves `app` called directly
        from emovid.utils.threads import configure

        configure(threads)


def _load_commands() -> None:
    # Importing a module registers its commands on `app`.
    from emovid.cli import video  # noqa: F401

    groups = (
        "data", "models", "weights", "train", "extract", "predict", "pretrain", "retrieval", "captions", "faces",
        "analyze",
    )  # fmt: skip
    for name in groups:  # every group ships with the package: an import error is a bug and must surface
        importlib.import_module(f"emovid.cli.{name}")


def err(message: str) -> None:
    """Print one error line to stderr."""
    typer.echo(f"emovid: error: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    args, threads = _take_value_flag(args, "--threads")
    try:  # before any command module imports torch: OpenMP reads its settings when it loads
        from emovid.utils.threads import configure

        configure(threads)
    except EmovidError as e:
        err(str(e))
        return _exit(e.exit_code, argv)
    args, flags = _take_root_flags(args, ("--debug", "--trust-checkpoint"))
    debug = "--debug" in flags
    if debug:
        args.insert(0, "--debug")
    if "--trust-checkpoint" not in flags:
        return _run(args, argv, debug)
    from emovid.models import hub  # imports torch: only when needed, so `emovid --version` stays quick

    previous = hub.set_trust_checkpoints(True)
    try:
        return _run(args, argv, debug)
    finally:  # main() called from Python must not leave the process trusting files
        hub.set_trust_checkpoints(previous)


def _take_root_flags(args: list[str], names: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """Remove root flags wherever they stand (before ``--``), so they also work after the subcommand."""
    end = args.index("--") if "--" in args else len(args)
    found = {a for a in args[:end] if a in names}
    return [a for a in args[:end] if a not in names] + args[end:], found


def _take_value_flag(args: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``NAME VALUE`` / ``NAME=VALUE`` wherever it stands (before ``--``); the last one wins."""
    end = args.index("--") if "--" in args else len(args)
    out, value, i = [], None, 0
    while i < end:
        a = args[i]
        if a == name and i + 1 < end:
            value, i = args[i + 1], i + 2
            continue
        if a.startswith(name + "="):
            value = a[len(name) + 1 :]
        else:
            out.append(a)
        i += 1
    return out + args[end:], value


class _WarningLines(logging.Handler):
    """emovid's own log warnings as ``emovid: warning: ...`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(f"emovid: {record.levelname.lower()}: {record.getMessage()}", err=True)
        except Exception:  # a log line must never break a run
            self.handleError(record)


_HANDLER = _WarningLines(logging.WARNING)


class _RunLines(logging.Handler):
    """The ``emovid.run`` notes (which weights a run starts from, its split sizes) as plain lines on stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(record.getMessage())
        except Exception:  # a log line must never break a run
            self.handleError(record)


_RUN_HANDLER = _RunLines(logging.INFO)


def _plain_help_when_piped() -> None:
    # Rich draws help as a table cut to the terminal width (80 columns when piped), truncating option names like
    # `--data,--data-csv,-…`; piped help (`| less`, `| grep`, files) gets click's plain, wrapped layout instead.
    if not sys.stdout.isatty():
        app.rich_markup_mode = None
        # child contexts inherit the width; 100 columns keeps option names and their help on one line more often
        app.info.context_settings = {**(app.info.context_settings or {}), "terminal_width": 100}


def _run(args: list[str], argv: list[str] | None, debug: bool) -> int:
    from emovid import batch

    _load_commands()
    logger = logging.getLogger("emovid")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.INFO if debug else logging.WARNING)
    notes = logging.getLogger("emovid.run")
    if _RUN_HANDLER not in notes.handlers:
        notes.addHandler(_RUN_HANDLER)
    notes.setLevel(logging.INFO)
    notes.propagate = False  # the notes are not warnings: keep them off the stderr handler
    _plain_help_when_piped()
    batch.DEBUG = debug  # --debug: per-input bugs surface with their traceback instead of being recorded
    try:
        rv = app(args=args, prog_name="emovid", standalone_mode=False)
    except EmovidError as e:
        if debug:
            traceback.print_exc()
        err(str(e))
        return _exit(e.exit_code, argv)
    except typer.Abort:
        err("interrupted")
        return _exit(130, argv)
    except KeyboardInterrupt:
        err("interrupted")
        return _exit(130, argv)
    except _click_exc.ClickException as e:
        e.show()
        return _exit(e.exit_code, argv)
    except OSError as e:  # disk full, permission denied, ...: the user's environment, not a bug
        if debug:
            traceback.print_exc()
        where = f"{display_path(e.filename)}: " if getattr(e, "filename", None) else ""
        err(f"{where}{e.strerror or e}")
        return _exit(1, argv)
    except Exception as e:  # a bug: still one line unless --debug, with a pointer to the traceback
        if debug:
            traceback.print_exc()
        err(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback and report it)")
        return _exit(3, argv)
    return _exit(rv if isinstance(rv, int) else 0, argv)


def _exit(code: int, argv: list[str] | None) -> int:
    # Called as a console script (argv None) we exit; called from Python/tests we return the code.
    if argv is None:
        sys.exit(code)
    return code


__all__ = ["app", "err", "main"]
