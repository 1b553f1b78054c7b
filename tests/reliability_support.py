"""Helpers for the reliability tests (test_reliability.py, test_faults.py): the CLI error
contract, generated media, and small checkpoints."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsrctl.cli import console
from avsrctl.cli.main import run


@pytest.fixture
def cli_error(capsys, monkeypatch):
    """`cli_error(argv, code, *fragments, unchanged=())` runs the CLI in-process and checks the
    contract of a failure: exit `code`; exactly one `error:` line, holding every fragment; a
    `hint:` line right after it; no traceback; and each path in `unchanged` byte for byte as
    before. Returns the error line."""
    monkeypatch.setattr(console.stderr(), "width", 10_000)  # one message, one line: no wrapping

    def check(argv: list[str], code: int, *fragments: str, unchanged=(), hint: str | None = None) -> str:
        before = {Path(p): Path(p).read_bytes() for p in unchanged}
        got = run([str(a) for a in argv])
        err = capsys.readouterr().err
        assert got == code, err
        lines = err.splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
        assert len(errors) == 1, err
        line = lines[errors[0]]
        assert errors[0] + 1 < len(lines) and lines[errors[0] + 1].startswith("hint: "), err
        assert len(lines[errors[0] + 1]) > len("hint: ") + 5, err
        if hint is not None:
            assert hint in lines[errors[0] + 1], f"{hint!r} not in {lines[errors[0] + 1]!r}"
        assert "Traceback" not in err, err
        for fragment in fragments:
            assert fragment in line, f"{fragment!r} not in {line!r}"
        for path, data in before.items():
            assert path.read_bytes() == data, f"{path} changed by a failed command"
        return line

    return check


def ffmpeg_make(path: Path, *args: str) -> Path:
    """A file made by ffmpeg's lavfi sources (an argument list, never a shell string)."""
    from avsrctl.data.media import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(path)], check=True)
    return path


def av_clip(path: Path, frames: int = 25, side: int = 32) -> Path:
    """A small mp4 with a moving picture and a tone."""
    from avsrctl.data.media import save_video

    t = np.arange(frames)[:, None, None, None]
    video = ((np.indices((side, side)).sum(0)[None, ..., None] * 4 + 9 * t) % 256).astype(np.uint8)
    video = np.broadcast_to(video, (frames, side, side, 3))  # (T, H, W, 3)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(640 * frames) / 16000)).astype(np.float32)
    save_video(path, video, audio=tone)
    return path


def speak(text: str, path: Path) -> np.ndarray:
    """espeak-ng speech for `text` as 16 kHz mono float32 (S,); skips when espeak-ng is absent."""
    import shutil

    from avsrctl.data.media import load_audio

    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        pytest.skip("espeak-ng not installed")
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return load_audio(path)


SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "we will meet at the station at nine",
    "please bring the green folder tomorrow",
    "the weather is cold and windy today",
    "my brother plays the piano every evening",
    "turn left at the second traffic light",
    "the library closes at six on sundays",
    "open the window and let the air in",
    "he painted the fence white last summer",
)


def long_speech(path: Path, minutes: float, period_s: int = 30) -> tuple[list[str], list[float]]:
    """A wav of `minutes` with one sentence every `period_s` seconds (1 s in) and silence between.

    Returns (the sentences in order, their start times in seconds)."""
    from avsrctl.data.media import save_audio

    n = int(minutes * 60 // period_s)
    spoken = [speak(s, path.with_name(f"sentence{i}.wav")) for i, s in enumerate(SENTENCES[:n])]
    audio = np.zeros(int(minutes * 60 * 16000), np.float32)  # (S,)
    for i in range(n):
        s = spoken[i % len(spoken)]
        start = (i * period_s + 1) * 16000
        audio[start : start + len(s)] = s
    save_audio(path, audio)
    return [SENTENCES[i % len(SENTENCES)] for i in range(n)], [i * period_s + 1.0 for i in range(n)]


def tiny_checkpoint(folder: Path, modality: str = "both", name: str = "final", *overrides: str) -> Path:
    """An untrained tiny model saved as a checkpoint (decodes, cannot resume)."""
    import torch

    from avsrctl.checkpoint import save_checkpoint
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model

    torch.manual_seed(0)
    cfg = load_config("tiny", list(overrides), {"model.modality": modality, "decode.max_new_tokens": 4})
    return save_checkpoint(folder, name, model=build_model(cfg), cfg=cfg, meta={"modality": modality, "step": 0})


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def fake_corpus(root: Path, streams: str = "av") -> Path:
    """train.tsv/.wrd with two rows; media files exist (bytes do not matter before decoding)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [str(root)]
    for uid in ("a", "b"):
        video, audio = (f"{uid}.mp4" if "v" in streams else "-"), (f"{uid}.wav" if "a" in streams else "-")
        for name in (video, audio):
            if name != "-":
                (root / name).write_bytes(b"x")
        rows.append(f"{uid}\t{video}\t{audio}\t{50 if video != '-' else '-'}\t{32000 if audio != '-' else '-'}")
    (root / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "train.wrd").write_text("bin blue at f two now\nset red by g nine soon\n", encoding="utf-8")
    return root


class Bait:
    """Unpickling this creates `path`: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def set_yaml(path: Path, dotted: str, value) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    node = data
    *parents, last = dotted.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def shell_risks(path: Path) -> list[str]:
    """Calls that could hand a string to a shell: shell=True, os.system/popen/exec*, and
    subprocess calls whose command is a string (literal, f-string or concatenation)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        where = f"{path.name}:{node.lineno}: {name}"
        if any(
            k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
            for k in node.keywords
        ):
            found.append(where + " with shell=")
        if (
            name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput")
            or name.startswith("os.exec")
            or name.startswith("os.spawn")
        ):
            found.append(where)
        if name.split(".")[-1] in ("run", "Popen", "call", "check_call", "check_output") and node.args:
            first = node.args[0]
            if isinstance(first, (ast.JoinedStr, ast.BinOp)) or (
                isinstance(first, ast.Constant) and isinstance(first.value, str)
            ):
                found.append(where + " with a string command")
    return found
