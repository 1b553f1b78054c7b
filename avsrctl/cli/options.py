"""Options shared by several commands, as `Annotated` aliases (Typer's public API only), and the one
check of a flag's value against its choices (which come from the library: config, not copies)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.config import MODALITIES, NORMALIZERS
from avsrctl.errors import MediaError, UsageError
from avsrctl.pretrained import builtin_names

__all__ = ["MODALITIES", "NORMALIZERS", "check_choice", "check_failed_share", "require_writable_folder"]

ConfigOpt = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="YAML file or preset name (default, tiny, offline-small). Default: 'default'."),
]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a config value: --set train.lr=3e-4 (repeatable).")
]
ModalityOpt = Annotated[
    Optional[str], typer.Option("--modality", "-m", help="audio, video or both (default: the config's model.modality).")
]
DataOpt = Annotated[
    Optional[Path], typer.Option("--data", help="Corpus folder with {train,valid,test}.tsv/.wrd (sets data.root).")
]
CheckpointOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint",
        help=f"Checkpoint folder written by `avsrctl train`, or a built-in model ({', '.join(builtin_names())}).",
    ),
]
TsvOpt = Annotated[Optional[Path], typer.Option("--tsv", help="Manifest (.tsv) to read.")]
WrdOpt = Annotated[Optional[Path], typer.Option("--wrd", help="Transcripts (.wrd); default: beside the .tsv.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format.")]
SCORE_FORMATS = ("table", "json")  # how decode and eval print their scores
ScoreFormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json (to stdout).")]
SUMMARY_FORMATS = ("text", "json")  # how prepare, demo-data and cache print their summaries
SummaryFormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"{' or '.join(SUMMARY_FORMATS)} (to stdout).")]
MAX_FAILED = 0.1  # share of utterances whose media may fail before decode/eval exit 1
MaxFailedOpt = Annotated[
    float,
    typer.Option(
        "--max-failed",
        min=0.0,
        max=1.0,
        help="Largest share (0 to 1) of utterances whose media may fail to decode; each is scored as an "
        f"empty hypothesis. More than this: the results are still written, then exit 1. Default: {MAX_FAILED} "
        "(one in ten); 0 fails on any, 1 never fails.",
    ),
]
BeamSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--beam-size",
        min=1,
        help="Beam width, 1 is greedy (default: the checkpoint's decode.beam_size; 5 for faster-whisper).",
    ),
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: a GPU when there is one).")
]
MinLipSyncOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-lip-sync",
        help="Fused models with the sync classifier: an utterance whose mean in-sync probability is below this "
        "is decoded from its audio alone; 0 keeps the lips of every utterance (default: the checkpoint's "
        "model.fusion.min_lip_sync).",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
# train and adapt: a run's seed (unset: the config's) and the checkpoint it continues from
TrainSeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (sets train.seed).")]
ResumeOpt = Annotated[
    Optional[str],
    typer.Option("--resume", help="Checkpoint folder to continue from, or 'auto' for the newest in --output."),
]


def require_writable_folder(folder: Path, flag: str) -> None:
    """Create `folder` if needed and check a file can be written there, before any long work starts."""
    probe = Path(folder) / f".avsrctl-write-test-{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"{flag} {folder}: cannot write there ({e.strerror or e})", hint=f"choose another {flag}"
        ) from None


def check_failed_share(n_failed: int, n_total: int, max_failed: float) -> None:
    """A media error when more than `max_failed` of `n_total` utterances failed to decode."""
    if n_total and n_failed / n_total > max_failed:
        raise MediaError(
            f"{n_failed} of {n_total} utterances could not be decoded ({n_failed / n_total:.0%}), "
            f"more than --max-failed {max_failed:g}",
            hint='each is named in a warning above and in wer.json\'s "failed": fix or drop those clips, '
            "or allow more with --max-failed",
        )


def check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    """A usage error naming the flag, the choices and the value, unless `value` is None or one of them."""
    if value is not None and value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="CPU threads for the computation (torch, CTranslate2). Default: all cores."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No logs or progress on stderr; errors still show.")]


def use_threads(threads: int | None) -> None:
    """Limit the CPU threads of torch (and OpenMP/MKL) and CTranslate2 for this process."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read when torch is first imported
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def use_quiet(quiet: bool) -> None:
    from avsrctl.cli import console

    console.set_quiet(quiet)


def check_device(device: str | None) -> None:
    """cpu, cuda or cuda:N (None: the default)."""
    if device is None:
        return
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
