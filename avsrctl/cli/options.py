"""Options shared by several commands, as `Annotated` aliases (Typer's public API only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigOpt = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="YAML file or preset name (default, tiny, offline-small). Default: 'default'."),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config value: --set train.lr=3e-4 (repeatable)."),
]
ModalityOpt = Annotated[
    Optional[str],
    typer.Option("--modality", "-m", help="audio, video or both (default: the config's model.modality)."),
]
DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", help="Corpus folder with {train,valid,test}.tsv/.wrd (sets data.root)."),
]
CheckpointOpt = Annotated[
    Optional[Path], typer.Option("--checkpoint", help="Checkpoint folder written by `avsrctl train`.")
]
TsvOpt = Annotated[Optional[Path], typer.Option("--tsv", help="Manifest (.tsv) to read.")]
WrdOpt = Annotated[Optional[Path], typer.Option("--wrd", help="Transcripts (.wrd); default: beside the .tsv.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
