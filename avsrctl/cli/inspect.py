"""`avsrctl inspect-params`: every model component, its widths and its (trainable) parameters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avsrctl.cli import console
from avsrctl.cli.options import (
    MODALITIES,
    SCORE_FORMATS,
    CheckpointOpt,
    ConfigOpt,
    ModalityOpt,
    ScoreFormatOpt,
    SetOpt,
    check_choice,
)
from avsrctl.errors import UsageError


def _check_args(config, checkpoint, overrides, modality, fmt) -> None:
    check_choice("--format", fmt, SCORE_FORMATS)
    check_choice("--modality", modality, MODALITIES)
    if config is not None and checkpoint is not None:
        raise UsageError("give --config or --checkpoint, not both", hint="a checkpoint carries its own config.yaml")
    if checkpoint is not None and overrides:
        raise UsageError("--set applies to --config only; a checkpoint's model is fixed by its config.yaml")


def _from_checkpoint(path: Path):
    """(model, cfg, what) from a checkpoint folder."""
    from avsrctl.checkpoint import load_checkpoint

    model, cfg, meta = load_checkpoint(path, device="cpu")
    return model, cfg, f"checkpoint {path} (step {meta.get('step', '?')})"


def _count(n: int) -> str:
    """Short parameter counts for the table (JSON keeps exact numbers): 8.21M, 984.6K, 576."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 10_000 else str(n)


def _print_table(report, what: str) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{what}, modality {report.modality}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for col, justify in (
        ("component", "left"),
        ("active", "center"),
        ("in", "right"),
        ("out", "right"),
        ("params", "right"),
        ("trainable", "right"),
        ("dtype", "left"),
        ("status", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in report.rows:
        table.add_row(
            r.name,
            "yes" if r.active else "no",
            "-" if r.input_dim is None else str(r.input_dim),
            "-" if r.output_dim is None else str(r.output_dim),
            _count(r.total),
            _count(r.trainable),
            r.dtype,
            r.status,
            style=None if r.active else "dim",
        )
    table.add_section()
    table.add_row(
        f"total ({report.modality})",
        "",
        "",
        "",
        _count(report.active_total),
        _count(report.active_trainable),
        "",
        "",
        style="bold",
    )
    table.add_row("total (built)", "", "", "", _count(report.built_total), _count(report.built_trainable), "", "")
    out = console.stdout()
    out.print(table)
    for r in report.rows:  # the details do not fit a terminal-wide table
        if r.detail:
            out.print(f"  {r.name}: {r.detail}", style=None if r.active else "dim")
    out.print(
        f"exact counts: {report.active_trainable:,} of {report.active_total:,} parameters train "
        f"for {report.modality} ({report.built_trainable:,} of {report.built_total:,} built)"
    )
    for note in report.notes:
        out.print(f"note: {note}")


def inspect_params(
    config: ConfigOpt = None,
    checkpoint: CheckpointOpt = None,
    modality: ModalityOpt = None,
    fmt: ScoreFormatOpt = "table",
    overrides: SetOpt = None,
) -> None:
    """Show every model component, its dimensions and its (trainable) parameters.

    With --config the model is built with all three modalities and the components the chosen
    --modality uses are marked active; with --checkpoint the trained model is loaded.
    --format json prints the same data as JSON on stdout.
    """
    _check_args(config, checkpoint, overrides, modality, fmt)
    from avsrctl.config import load_config
    from avsrctl.models.llm import cast_base, resolve_dtype

    if checkpoint is not None:
        model, cfg, what = _from_checkpoint(checkpoint)
    else:
        from avsrctl.models.builder import build_architecture

        cfg = load_config(config, overrides)
        model, shaped = build_architecture(cfg, {"audio", "video", "both"})
        what = f"config {config or 'default'}"
        if shaped:  # weights not at hand (offline, not downloaded): nothing is downloaded for a table
            what += f" (without weights: {', '.join(shaped)} built from their published shapes)"
    modality = modality or cfg.model.modality
    if modality not in model.modalities:
        raise UsageError(
            f"--modality {modality}: this model serves {', '.join(model.modalities)}",
            hint="the checkpoint was trained for other streams; pick one of those",
        )
    from avsrctl.models.inspect import param_report

    # Built on the CPU (no GPU memory needed to count), reported in the dtypes `train` builds on
    # a GPU: model.llm.dtype applies there; the note says what a CPU run uses instead.
    gpu_dtype, _ = resolve_dtype(cfg.model.llm.dtype, "cuda")
    cast_base(model.llm, gpu_dtype)
    _, cpu_note = resolve_dtype(cfg.model.llm.dtype, "cpu")
    notes = (f"dtypes as `avsrctl train` builds them on a GPU; {cpu_note}",) if cpu_note else ()
    report = param_report(model, modality, notes=notes)
    if fmt == "json":
        data = {"source": what, **report.to_dict()}
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    else:
        _print_table(report, what)
