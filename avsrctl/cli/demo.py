"""`avsrctl demo`: the whole job end to end on a small corpus, offline, in a few minutes (`make demo`).

The steps, their commands and the summary are the library's (avsrctl/demo/); this module parses the
options and calls `demo.run_demo`, so its errors reach the one error boundary in cli/main.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.demo import EPOCHS, MODEL, UTTERANCES


def demo(
    work: Annotated[
        Optional[Path],
        typer.Option(
            "--work",
            help="Folder to keep corpus, checkpoint and results in (default: a temporary folder, removed at the end).",
        ),
    ] = None,
    utterances: Annotated[int, typer.Option("--utterances", help="Synthetic corpus size, all splits.")] = UTTERANCES,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = EPOCHS,
    config: Annotated[
        str,
        typer.Option(
            "--config", help="Preset or YAML file of the from-scratch run (tiny: random tiny models, seconds)."
        ),
    ] = "offline-small",
    model: Annotated[
        str, typer.Option("--model", help="Trained model of steps 2 and 3: a built-in name or a checkpoint folder.")
    ] = MODEL,
) -> None:
    """Train briefly, then recognise synthetic and real GRID clips with the built-in model (what `make demo` runs)."""
    from avsrctl import demo as library

    library.run_demo(work, config=config, utterances=utterances, epochs=epochs, model=model)
