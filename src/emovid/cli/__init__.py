"""The ``emovid`` command line.

Each command group lives in its own module and registers itself on :data:`app`. Commands are thin: parse,
call library functions, print. User-caused failures are :class:`~emovid.errors.EmovidError`; :func:`main`
prints them on one line and exits non-zero (``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys
import traceback

import typer

try:  # typer >= 0.17 vendors click; earlier versions use the click package
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc

from emovid import __version__
from emovid.errors import EmovidError

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
) -> None:
    """Read emotion from video."""


def _load_commands() -> None:
    # Importing a module registers its commands on `app`.
    from emovid.cli import video  # noqa: F401

    for name in ("data", "models", "train", "extract", "pretrain", "retrieval", "faces", "analyze"):
        try:
            __import__(f"emovid.cli.{name}")
        except ModuleNotFoundError as e:  # a command group that is not part of this build yet
            if e.name != f"emovid.cli.{name}":
                raise


def err(message: str) -> None:
    """Print one error line to stderr."""
    typer.echo(f"emovid: error: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _load_commands()
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
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
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
