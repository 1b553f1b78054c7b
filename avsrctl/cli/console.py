"""Terminal output: results go to stdout, logs, progress and errors to stderr (via rich)."""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console
from rich.markup import escape


@lru_cache(maxsize=1)
def stderr() -> Console:
    return Console(stderr=True, highlight=False)


@lru_cache(maxsize=1)
def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def log(message: str) -> None:
    stderr().print(message)


def error(message: str, hint: str | None = None) -> None:
    stderr().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        stderr().print(f"[dim]hint: {escape(hint)}[/]")
