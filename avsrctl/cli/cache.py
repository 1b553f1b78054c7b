"""`avsrctl cache info DIR`: what a feature cache folder (train --cache-features DIR) holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from avsrctl.cli.options import SUMMARY_FORMATS, SummaryFormatOpt, check_choice

cache_app = typer.Typer(help="Look at a feature cache folder (train --cache-features DIR).", no_args_is_help=True)


@cache_app.command("info")
def info(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="The folder given to train --cache-features.")],
    format: SummaryFormatOpt = "text",
) -> None:
    """Size on disk, entries, hours of speech and encoders per stream."""
    check_choice("--format", format, SUMMARY_FORMATS)
    from avsrctl.training.cache import cache_info

    found = cache_info(folder)
    if format == "json":
        print(json.dumps(found, indent=2))
        return
    print(f"{found['path']}: {_size(found['bytes'])}, {found['entries']} entries (format {found['format']})")
    for stream, s in found["streams"].items():
        per_hour = f", {_size(s['bytes_per_hour'])}/h" if s["bytes_per_hour"] else ""
        dtypes = ", ".join(f"{n} {d}" for d, n in s["dtypes"].items())
        encoders = ", ".join(f"{e} ({n})" for e, n in s["encoders"].items()) or "-"
        print(
            f"  {stream}: {s['entries']} entries in {s['shards']} shards, {_size(s['bytes'])}, "
            f"{s['hours']:.2f} h{per_hour}; {dtypes or 'no entries'}; encoders {encoders}"
        )
        if s["damaged"]:
            print(f"    damaged shards (ignored, entries recomputed): {', '.join(s['damaged'])}")
        if s["unfinished"]:
            print(f"    {s['unfinished']} unfinished temporary shard(s) from a writer still running or killed")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
