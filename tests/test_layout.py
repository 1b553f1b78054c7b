"""The layout rules of docs/ARCHITECTURE.md, checked on the source.

- Only training/ and the commands that train import avsrctl.training: inference (decode, eval,
  transcribe, inspect-params) loads checkpoints through avsrctl/checkpoint.py, which sits below
  both, so nothing runs back up into the training package.
- Only data/media.py (with data/probe.py, the binary and `probe`) runs ffmpeg or writes wav/mp4.
- The synthetic corpus generator (avsrctl/synth/) stays off the product path: only
  `avsrctl demo-data` and the demo import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import avsrctl

PACKAGE = Path(avsrctl.__file__).parent
# cache info reads the training cache; adapt fine-tunes (avsrctl/training/adapt.py)
MAY_IMPORT_TRAINING = ("training/", "cli/train.py", "cli/cache.py", "cli/adapt.py")


def training_imports(source: str) -> list[int]:
    """Lines of `source` that import avsrctl.training, at module level or inside a function."""

    def is_training(name: str) -> bool:
        return name == "avsrctl.training" or name.startswith("avsrctl.training.")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            names = [node.args[0].value] if isinstance(node.args[0].value, str) else []  # import_module("...")
        else:
            continue
        if any(is_training(n) for n in names):
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_every_form_of_a_training_import():
    assert training_imports("from avsrctl.training.run import run_training\n") == [1]
    assert training_imports("import os\nfrom avsrctl import training\n") == [2]
    assert training_imports("def f():\n    import avsrctl.training.state as s\n") == [2]
    assert training_imports("import importlib\nimportlib.import_module('avsrctl.training.trainer')\n") == [2]
    assert training_imports("from avsrctl.checkpoint import load_checkpoint\nimport avsrctl.trainingwheels\n") == []


def test_nothing_outside_training_and_cli_train_imports_training():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(MAY_IMPORT_TRAINING):
            continue
        offenders += [f"avsrctl/{rel}:{line}" for line in training_imports(path.read_text(encoding="utf-8"))]
    assert not offenders, f"inference must not import avsrctl.training: {offenders}"
    assert (PACKAGE / "cli" / "train.py").is_file() and (PACKAGE / "checkpoint.py").is_file()


# ------------------------------------------------------------------ media and the synthetic corpus

MAY_RUN_FFMPEG = ("data/media.py", "data/probe.py")
MAY_IMPORT_SYNTH = ("synth/", "cli/demo_data.py", "demo/", "cli/demo.py")  # demo-data and the demo


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in `source`, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def media_writes(source: str) -> list[int]:
    """Lines of `source` that run ffmpeg (ffmpeg-python, imageio-ffmpeg, `ffmpeg_exe`) or write wav/mp4 themselves."""
    imports = imported_modules(source)
    lines = [
        n for n, name in imports if name.split(".")[0] in ("ffmpeg", "imageio_ffmpeg") or name.endswith(".ffmpeg_exe")
    ]
    for node in ast.walk(ast.parse(source)):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name in ("ffmpeg_exe", "VideoWriter"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "open":  # wave.open(path, "wb")
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            is_wave = isinstance(node.func.value, ast.Name) and node.func.value.id == "wave"
            if is_wave and isinstance(mode, ast.Constant) and str(mode.value).startswith("w"):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_the_checkers_find_media_writers_and_synth_imports():
    assert media_writes("import ffmpeg\n") == [1]
    assert media_writes("def f():\n    from avsrctl.data.media import ffmpeg_exe\n    return ffmpeg_exe()\n") == [2, 3]
    assert media_writes("import subprocess\nsubprocess.run([media.ffmpeg_exe(), '-i', 'x'])\n") == [2]
    assert media_writes("import wave\nwith wave.open(p, 'wb') as w:\n    pass\n") == [2]
    assert media_writes("import cv2\nw = cv2.VideoWriter('a.mp4', 0, 25, (9, 9))\n") == [2]
    assert media_writes("import wave\nwith wave.open(p, 'rb') as w:\n    pass\nopen(p, 'w')\n") == []
    assert media_writes("from avsrctl.data.media import save_video\nsave_video(p, frames)\n") == []
    names = [name for _, name in imported_modules("def f():\n    from avsrctl.synth.corpus import write_mp4\n")]
    assert "avsrctl.synth.corpus" in names


def test_only_data_media_runs_ffmpeg_or_writes_wav_and_mp4():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in MAY_RUN_FFMPEG:
            offenders += [f"avsrctl/{rel}:{line}" for line in media_writes(path.read_text(encoding="utf-8"))]
    assert not offenders, f"only data/media.py runs ffmpeg or writes wav/mp4 (call its functions): {offenders}"
    assert all((PACKAGE / rel).is_file() for rel in MAY_RUN_FFMPEG)


def test_the_product_path_does_not_import_the_synthetic_corpus_generator():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(MAY_IMPORT_SYNTH):
            continue
        imports = imported_modules(path.read_text(encoding="utf-8"))
        offenders += [f"avsrctl/{rel}:{n}" for n, name in imports if name.split(".")[:2] == ["avsrctl", "synth"]]
    assert not offenders, f"only demo-data and the demo import avsrctl.synth: {offenders}"
    assert (PACKAGE / "synth" / "corpus.py").is_file() and not list((PACKAGE / "data").glob("synth*.py"))
