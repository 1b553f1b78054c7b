"""Terminal output: results go to stdout, logs, progress and errors to stderr (via rich).

An error or hint is one line whatever the width (`2>&1 | grep '^error:'` keeps every word);
`-q/--quiet` silences logs and progress bars (`chatter()`), never errors or results.
"""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console
from rich.markup import escape

_state = {"quiet": False}


@lru_cache(maxsize=1)
def stderr() -> Console:
    return Console(stderr=True, highlight=False)


@lru_cache(maxsize=1)
def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


@lru_cache(maxsize=1)
def _silent() -> Console:
    return Console(stderr=True, quiet=True)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def chatter() -> Console:
    """The console for logs, status spinners and progress bars: stderr, or a silent one with --quiet."""
    return _silent() if _state["quiet"] else stderr()


def log(message: str) -> None:
    chatter().print(message, soft_wrap=True)  # a path is not broken across lines either


def error(message: str, hint: str | None = None) -> None:
    # soft_wrap: never break the line at the console width (80 columns when stderr is not a terminal)
    stderr().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        stderr().print(f"[dim]hint: {escape(hint)}[/]", soft_wrap=True)


def warning(message: str) -> None:
    """A warning on stderr, shown even with --quiet (a result the user must know about)."""
    stderr().print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
