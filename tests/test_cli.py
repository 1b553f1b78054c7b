from __future__ import annotations

import subprocess
import sys

import pytest

from avsrctl.cli.main import run

COMMANDS = ["train", "decode", "eval", "inspect-params", "transcribe", "prepare", "demo-data"]


def test_importing_cli_keeps_torch_out():
    code = (
        "import sys; import avsrctl.cli.main, avsrctl.config; "
        "heavy = [m for m in ('torch', 'transformers', 'faster_whisper', 'open_clip', 'cv2') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"heavy modules imported by the CLI: {proc.stdout}"


def test_help_lists_every_command(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_subcommand_help(cmd, capsys):
    assert run([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "--help" in out


def test_version(capsys):
    from avsrctl import __version__

    assert run(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_option_is_usage_error(capsys):
    assert run(["train", "--no-such-flag"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["decode", "--checkpoint", "missing", "--min-lip-sync", "1.5"], "--min-lip-sync must be in [0, 1) (got 1.5)"),
        (["eval", "--tsv", "missing.tsv", "--min-lip-sync", "0.5"], "--min-lip-sync applies to --checkpoint"),
    ],
)
def test_min_lip_sync_is_checked_before_anything_loads(args, message, capsys):
    assert run(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_option_help_loses_brackets_to_rich_markup():
    # Help is rendered as rich markup, where "[landmarks]" is a style tag and vanishes: brackets
    # that should show (an extra's name, an option's syntax) must be escaped as "\[".
    import re

    import typer

    from avsrctl.cli.main import app

    def commands(cmd, name=""):
        yield name, cmd
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, f"{name} {sub_name}".strip())

    tag = re.compile(r"(?<!\\)\[[a-z/][^\]\s]*\]")  # what rich reads as a markup tag
    lost = [
        f"{name} {param.opts[0]}: {m.group(0)}"
        for name, cmd in commands(typer.main.get_command(app))
        for param in cmd.params
        for m in tag.finditer(getattr(param, "help", None) or "")
    ]
    assert not lost, lost


def _option_help(command: str, option: str) -> str:
    import typer

    from avsrctl.cli.main import app

    cmd = typer.main.get_command(app).commands[command]
    return next(p.help for p in cmd.params if option in p.opts)


@pytest.mark.parametrize(
    "command, option, words",
    [
        ("transcribe", "--device", ["cpu", "cuda", "cuda:N", "auto"]),  # cuda:1 is accepted: say so
        ("decode", "--format", ["table", "json"]),  # it was "Output format."
        ("decode", "--max-failed", ["0.1"]),  # the default and what it means
        ("eval", "--max-failed", ["0.1"]),
    ],
)
def test_option_help_names_the_accepted_values(command, option, words):
    text = _option_help(command, option)
    assert all(w in text for w in words), text


@pytest.mark.parametrize(
    "command, args, choices",
    [
        ("inspect-params", [], ["table", "json"]),
        ("prepare", [], ["text", "json"]),
        ("demo-data", ["unused-out"], ["text", "json"]),
    ],
)
def test_format_help_lists_the_choices_the_command_accepts(command, args, choices, capsys, tmp_path):
    """`--format` said only "Output format."; the help names the choices, and they are the ones taken."""
    text = _option_help(command, "--format")
    assert all(c in text for c in choices), text
    assert run([command, *(str(tmp_path / a) for a in args), "--format", "xml"]) == 2
    err = capsys.readouterr().err
    assert all(c in err for c in choices), err
