"""Built-in checkpoints: names like `grid-small` that work wherever a checkpoint folder does.

`--checkpoint grid-small` (decode, eval, transcribe, inspect-params) and `train --init-from
grid-small` resolve the name the way `--config tiny` resolves a preset: a real path of that name
wins; otherwise the folder shipped inside the package is used. `checkpoint.checkpoint_folder`
calls `resolve_checkpoint`, so every command gets the same rule and the same errors.

```
avsrctl/builtin/<name>/   (package data; written by scripts/export_builtin.py, never by hand)
  config.yaml             the trained checkpoint's resolved config: rebuilds the model
  model.safetensors       its trainable weights, float16 (cast back to the model's dtype on load)
  meta.json               its meta.json, plus the built-in name and the weights' dtype
  LICENCES.md             what the weights derive from, and under which terms
  PROVENANCE.md / .json   recipe command, git commit, date, the recipe's figures (docs/results.json);
                          a folder without PROVENANCE.json is not installed
```

Writing a built-in model (export, provenance, licence notes, the figures an export must not make
worse) is release tooling and lives outside the package, in scripts/export_builtin.py.
No torch here: resolving a name is path arithmetic.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from avsrctl.errors import CheckpointError

BUILTIN_ROOT = Path(__file__).resolve().parent / "builtin"  # package data (pyproject: builtin/*/*)
PROVENANCE_JSON = "PROVENANCE.json"  # written last by the export: its presence means the folder is complete


@dataclass(frozen=True)
class Builtin:
    description: str
    recipe: str  # the command that trains it and exports it here


BUILTINS: dict[str, Builtin] = {
    "grid-small": Builtin(
        "offline-small fused audio-visual model trained by the GRID recipe (GRID grammar, 25 fps, 48 px lips)",
        "make grid-recipe",
    )
}


def builtin_names() -> list[str]:
    return sorted(BUILTINS)


def builtin_folder(name: str) -> Path:
    return BUILTIN_ROOT / name


def is_installed(name: str) -> bool:
    return (builtin_folder(name) / PROVENANCE_JSON).is_file()


def is_builtin_name(value: str | os.PathLike) -> bool:
    """True when `value` names a built-in model and no real path of that name shadows it."""
    return str(value) in BUILTINS and not Path(value).expanduser().exists()


def resolve_checkpoint(value: str | os.PathLike) -> Path:
    """A checkpoint argument as a folder path: a real path as given, else a built-in model's folder.

    A bare word (no folder separator) that is neither raises one line listing the built-in names;
    a missing path is returned as it is, for the checkpoint reader to report.
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    name = str(value)
    if name in BUILTINS:
        if not is_installed(name):
            raise CheckpointError(
                f"built-in model {name} is not installed in this build; run `{BUILTINS[name].recipe}`",
                hint=f"it trains the model and exports it into {builtin_folder(name)}; "
                "or pass a checkpoint folder written by `avsrctl train`",
            )
        return builtin_folder(name)
    if os.sep not in name and "/" not in name and not path.suffix:
        close = difflib.get_close_matches(name, builtin_names(), n=1)
        raise CheckpointError(
            f"no checkpoint folder or built-in model named '{name}' (built-in: {', '.join(builtin_names())})",
            hint=f"did you mean '{close[0]}'?"
            if close
            else "pass a folder written by `avsrctl train`, e.g. runs/tiny/final",
        )
    return path


def outputs_beside(checkpoint: str | os.PathLike) -> Path:
    """Where a command writes default outputs for a checkpoint: inside its folder, except for a built-in
    model (never write into the installed package), whose outputs go to ./runs/<name>."""
    if is_builtin_name(checkpoint):
        return Path("runs") / str(checkpoint)
    return Path(checkpoint)
