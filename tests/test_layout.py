"""The import rule of docs/ARCHITECTURE.md: only training/ and `avsrctl train` import avsrctl.training.

Inference (decode, eval, transcribe, inspect-params) loads checkpoints through avsrctl/checkpoint.py,
which sits below both, so nothing runs back up into the training package.
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
