"""The `avsrctl` command: registers the subcommands and holds the one error boundary.

Nothing here (or in the command modules at import time) imports torch or transformers, so
`avsrctl --help` is instant; each command imports what it needs inside its body.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from avsrctl import __version__
from avsrctl.cli import console
from avsrctl.cli.adapt import adapt
from avsrctl.cli.cache import cache_app
from avsrctl.cli.decode import decode
from avsrctl.cli.demo import demo
from avsrctl.cli.demo_data import demo_data
from avsrctl.cli.eval import eval_
from avsrctl.cli.inspect import inspect_params
from avsrctl.cli.prepare import prepare
from avsrctl.cli.train import train
from avsrctl.cli.transcribe import transcribe
from avsrctl.errors import AvsrError

app = typer.Typer(
    name="avsrctl",
    help="Audio-visual speech recognition with an LLM decoder: prepare data, train, decode, evaluate, transcribe.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (Typer; imports nothing heavy)
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": bool(os.environ.get("AVSRCTL_DEBUG"))}


def _version(value: bool) -> None:
    if value:
        print(f"avsrctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Audio-visual speech recognition with an LLM decoder."""
    _state["debug"] = _state["debug"] or debug


app.command("train")(train)
app.command("decode")(decode)
app.command("eval")(eval_)
app.command("inspect-params")(inspect_params)
app.command("transcribe")(transcribe)
app.command("prepare")(prepare)
app.command("demo-data")(demo_data)
app.command("adapt")(adapt)
app.command("demo")(demo)
app.add_typer(cache_app, name="cache")


def _fail(message: str, hint: str | None, code: int) -> int:
    # One line each, whatever the message carries (a YAML or ffmpeg error can span lines).
    def one_line(text: str) -> str:
        return " ".join(part.strip() for part in text.splitlines() if part.strip())

    console.error(one_line(message), one_line(hint) if hint else None)
    return code


_COMMANDS = ("train", "decode", "eval", "inspect-params", "transcribe", "prepare", "demo-data", "adapt", "demo")


def _command(argv: list[str]) -> str:
    """'avsrctl train' for the command in `argv` (plain 'avsrctl' when there is none)."""
    words = [a for a in argv if not a.startswith("-")]
    return f"avsrctl {words[0]}" if words and words[0] in _COMMANDS else "avsrctl"


# Hints for operating-system errors that reach the boundary without a library error around them.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write to another folder",
    errno.EDQUOT: "the disk quota is exhausted: free space or write to another folder",
    errno.EACCES: "permission denied: check the file's permissions or write to another folder",
    errno.EPERM: "operation not permitted: check the file's permissions or write to another folder",
    errno.EROFS: "the filesystem is read-only: write to another folder",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _interrupted_hint(argv: list[str]) -> str:
    if _command(argv) in ("avsrctl train", "avsrctl adapt"):
        return f"continue from the last checkpoint with `{_command(argv)} ... --resume auto` (same --output)"
    return "outputs are written only once complete: rerun the same command"


def _os_error(e: OSError) -> tuple[str, str]:
    where = e.filename if e.filename is not None else None
    what = e.strerror or str(e)
    message = f"{where}: {what}" if where is not None else what
    return message, _OS_HINTS.get(e.errno, "rerun with --debug for the traceback")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (the error boundary; used by `main` and tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    console.set_quiet(False)  # per invocation (tests run many in one process); commands set it from -q
    if "--debug" in argv:
        _state["debug"] = True
    try:
        result = app(args=argv, prog_name="avsrctl", standalone_mode=False)
        if result == 130:  # Typer turns Ctrl-C inside a command into a silent 130 (commands return None)
            return _fail("interrupted", _interrupted_hint(argv), 130)
        return result if isinstance(result, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return _fail("aborted", None, 130)
    except TyperException as e:  # usage errors from option parsing (Typer's click exceptions)
        if _state["debug"]:
            raise
        message = e.format_message().strip()
        if not message or "\n" in message:  # a help screen (run without arguments): show it as it is
            e.show(file=sys.stderr)
            return e.exit_code
        return _fail(message, f"run `{_command(argv)} --help` for the options", e.exit_code)
    except AvsrError as e:
        if _state["debug"]:
            raise
        hint = e.hint.replace("avsrctl <command>", _command(argv)) if e.hint else None
        if hint is None:
            hint = f"run `{_command(argv)} --help`" if e.exit_code == 2 else "rerun with --debug for the traceback"
        return _fail(str(e), hint, e.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", _interrupted_hint(argv), 130)
    except OSError as e:  # disk full, permissions, ... outside a library error
        if _state["debug"]:
            raise
        return _fail(*_os_error(e), 1)
    except Exception as e:  # an unexpected failure: one line, traceback behind --debug
        if _state["debug"]:
            raise
        return _fail(f"unexpected {type(e).__name__}: {e}", "rerun with --debug for the traceback", 1)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
