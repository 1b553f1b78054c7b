"""The checkpoint format, below both training and inference: write, find, read and load.

```
OUTPUT/
  latest                  name of the newest complete checkpoint (written atomically)
  epoch-0001/ step-000500/ best/ final/
    config.yaml           resolved config: rebuilds the model
    model.safetensors     weights a run trained (connectors, fusion, LoRA, unfrozen encoders), plus frozen ones
                          it was initialised with from a checkpoint (--init-from: AVSRModel.keep_loaded);
                          never the pretrained encoder/LLM weights config.yaml rebuilds
    meta.json             format version, avsrctl version, modality, step, epoch, valid loss/WER, tokenizer additions
    optimizer.safetensors optimizer state tensors, keyed 'state/<param name>/<field>' (training/state.py)
    trainer_state.json    step, epoch, batch position, scheduler, RNG states, best valid loss, param groups
```

A checkpoint is written to `OUTPUT/.tmp-<name>`, every file fsync'd, then renamed into place
(atomic.write_folder, which scripts/export_builtin.py uses too), so a crash leaves either the previous
checkpoint or the new one, never half of one. Reading uses safetensors and JSON only: a
pickle planted where weights belong is refused. `load_checkpoint` is what decode, eval,
transcribe and inspect-params call; training adds the optimiser state, periodic names and
pruning (avsrctl/training/). Wherever a checkpoint path is read, a built-in name
(`grid-small`, avsrctl/pretrained.py) is accepted too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avsrctl import __version__
from avsrctl.atomic import recover_replaced, write_atomic, write_folder
from avsrctl.config import Config, config_from_dict
from avsrctl.errors import CheckpointError, ConfigError
from avsrctl.models.weights import trainable_mismatches
from avsrctl.pretrained import resolve_checkpoint

FORMAT_VERSION = 1
CONFIG, WEIGHTS, META = "config.yaml", "model.safetensors", "meta.json"
OPTIMIZER, STATE = "optimizer.safetensors", "trainer_state.json"
LATEST = "latest"
REQUIRED = (CONFIG, WEIGHTS, META)  # enough to decode
RESUMABLE = REQUIRED + (OPTIMIZER, STATE)  # enough to continue training
PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt", "model.pkl")


# ----------------------------------------------------------------------- writing


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def cpu_tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in `state` that hold NaN or inf, sorted."""
    return sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))


def _nonfinite_message(bad: list[str]) -> str:
    more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
    return f"non-finite weights (NaN or inf) in {bad[0]}{more}"


def require_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse the weights read from `path` when a tensor holds NaN or inf: a diverged run's output."""
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{path}: {_nonfinite_message(bad)}",
            hint="the run that wrote it diverged: use an earlier checkpoint of that run, or retrain with a lower train.lr",
        )


def model_modalities(model: Any) -> list[str]:
    """The streams a model holds, as a sorted list (e.g. ['audio', 'video'])."""
    mods = getattr(model, "modalities", None) or ()
    if isinstance(mods, str):
        mods = (mods,)
    return sorted(str(m) for m in mods)


def tokenizer_additions(model: Any) -> dict[str, int] | None:
    """Tokens the model added to its tokenizer (markers, pad), to check a rebuilt tokenizer against."""
    tok = getattr(model, "tokenizer", None)
    get = getattr(tok, "get_added_vocab", None)
    if get is None:
        return None
    try:
        return {str(k): int(v) for k, v in get().items()}
    except Exception:  # a custom tokenizer without a usable added vocabulary: nothing to check
        return None


def write_latest(output: Path, name: str) -> None:
    write_atomic(Path(output) / LATEST, name + "\n", durable=True)


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (disk full, permissions): also an OSError, as the cause is one."""


def _write_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f" ({e.filename})" if e.filename else "")
    return str(e)


def _fill_checkpoint(
    tmp: Path,
    *,
    model: Any,
    weights: dict[str, torch.Tensor],
    cfg: Config,
    name: str,
    meta: dict[str, Any],
    optimizer_tensors: dict[str, torch.Tensor] | None,
    trainer_state: dict[str, Any] | None,
) -> None:
    """Write a checkpoint's files into the folder `tmp`."""
    cfg.save(tmp / CONFIG)
    save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt"})
    full_meta = {
        "format_version": FORMAT_VERSION,
        "avsrctl_version": __version__,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "modalities": model_modalities(model),
        "tokenizer_added": tokenizer_additions(model),
        **meta,
    }
    _write_json(tmp / META, full_meta)
    if optimizer_tensors is not None:
        save_file(optimizer_tensors, str(tmp / OPTIMIZER))
    if trainer_state is not None:
        _write_json(tmp / STATE, {"format_version": FORMAT_VERSION, **trainer_state})


def save_checkpoint(
    output: str | os.PathLike,
    name: str,
    *,
    model: Any,
    cfg: Config,
    meta: dict[str, Any],
    optimizer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
    update_latest: bool = True,
) -> Path:
    """Write checkpoint `name` under `output` atomically and return its path.

    `model` is the bare model (not the DDP wrapper). `optimizer_tensors` and `trainer_state`
    come from `flatten_optimizer` and the trainer; without them the checkpoint can decode but
    not resume. An existing checkpoint of the same name (e.g. `best`) is replaced. Weights holding
    NaN or inf are refused before anything is written: a diverged model never becomes a checkpoint.
    """
    output = Path(output)
    final = output / name
    weights = cpu_tensors(model.trainable_state_dict())
    bad = nonfinite_tensors(weights)
    if bad:
        raise CheckpointError(
            f"refusing to write checkpoint {final}: {_nonfinite_message(bad)}",
            hint="the model diverged: lower train.lr, or train in fp32 (train.mixed_precision=no)",
        )
    try:
        write_folder(
            final,
            lambda tmp: _fill_checkpoint(
                tmp,
                model=model,
                weights=weights,
                cfg=cfg,
                name=name,
                meta=meta,
                optimizer_tensors=optimizer_tensors,
                trainer_state=trainer_state,
            ),
        )
        if update_latest:  # a failure here leaves a complete folder that find_latest still finds
            write_latest(output, name)
    except BaseException as e:
        # write_folder left no partial folder behind (on a full disk it would hold the space the
        # next attempt needs): the final name and `latest` still point at complete checkpoints.
        if isinstance(e, (OSError, SafetensorError)):
            previous = read_latest_name(output)
            raise CheckpointWriteError(
                f"cannot write checkpoint {final}: {_write_reason(e)}",
                hint=(
                    "free disk space or choose another --output; "
                    + (
                        f"the last complete checkpoint is {output / previous}, continue from it with --resume auto"
                        if previous
                        else "no checkpoint of this run was written yet"
                    )
                ),
            ) from e
        raise
    return final


# ----------------------------------------------------------------------- finding


def is_complete(path: Path, *, resumable: bool = False) -> bool:
    names = RESUMABLE if resumable else REQUIRED
    return path.is_dir() and all((path / n).is_file() for n in names)


def _step_of(path: Path) -> int:
    try:
        return int(json.loads((path / META).read_text(encoding="utf-8")).get("step", -1))
    except (OSError, ValueError, AttributeError):
        return -1


def list_checkpoints(output: str | os.PathLike, *, resumable: bool = False) -> list[Path]:
    """Complete checkpoint folders under `output`, oldest first (by step, then modification time)."""
    output = Path(output)
    if not output.is_dir():
        return []
    found = [p for p in output.iterdir() if not p.name.startswith(".") and is_complete(p, resumable=resumable)]
    return sorted(found, key=lambda p: (_step_of(p), (p / META).stat().st_mtime))


def read_latest_name(output: Path) -> str | None:
    try:
        return (Path(output) / LATEST).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def find_latest(output: str | os.PathLike) -> Path | None:
    """The newest complete, resumable checkpoint: the one `latest` names, unless a complete one
    was written after it, else a scan.

    `latest` is updated just after a checkpoint's rename, so a crash between the two leaves it
    naming the previous checkpoint while a newer complete one exists: that one wins. Written
    order (not step number) decides, so checkpoints left from an abandoned branch of the run
    (a resume from an older step) never win over the ones written since.
    """
    output = Path(output)
    found = list_checkpoints(output, resumable=True)
    if not found:
        return None

    def written(p: Path) -> int:
        return (p / META).stat().st_mtime_ns

    newest = max(found, key=written)
    name = read_latest_name(output)
    named = output / name if name and "/" not in name else None
    if named is not None and named in found and written(named) >= written(newest):
        return named
    return newest


# ----------------------------------------------------------------------- reading


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head == b"PK"  # pickle protocol byte, or torch.save's zip archive


def _check_folder(path: Path, needed: tuple[str, ...]) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a checkpoint is a folder (config.yaml, model.safetensors, meta.json)")
    if not (path / WEIGHTS).is_file():
        planted = [n for n in PICKLE_NAMES if (path / n).is_file()]
        if planted:
            raise CheckpointError(
                f"{path / planted[0]}: pickled weights are never loaded (they can run arbitrary code); "
                f"avsrctl reads only {WEIGHTS}",
                hint="convert trusted weights to safetensors, or use a checkpoint written by `avsrctl train`",
            )
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        inside = list_checkpoints(path)  # a run folder given instead of one of its checkpoints
        hint = None
        if inside:
            example = find_latest(path) or inside[-1]
            hint = f"{path} is a run folder: pass one of its checkpoints, e.g. {example}"
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}", hint=hint)


def read_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle in disguise) is refused, never unpickled."""
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        what = "a pickle file" if _looks_pickled(path) else "not a safetensors file"
        raise CheckpointError(
            f"{path}: {what}; refusing to load it ({type(e).__name__}: {e})",
            hint="only safetensors weights are read; use a checkpoint written by `avsrctl train`",
        ) from None


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _static_fusion_by_default(data) -> None:
    """Checkpoints written before `model.fusion.weighting` existed used the static weight (today's
    default is dynamic): their config gets the setting they were trained with."""
    fusion = (
        data.get("model", {}).get("fusion") if isinstance(data, dict) and isinstance(data.get("model"), dict) else None
    )
    if isinstance(fusion, dict) and "weighting" not in fusion:
        fusion["weighting"] = "static"


def read_checkpoint_config(path: str | os.PathLike) -> Config:
    path = Path(path)
    _check_folder(path, (CONFIG,))
    try:
        data = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:  # also a python/* tag: safe_load never constructs objects
        mark = getattr(e, "problem_mark", None)
        where = f"{path / CONFIG}:{mark.line + 1}" if mark is not None else str(path / CONFIG)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CheckpointError(f"{where}: unreadable ({problem})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / CONFIG}: unreadable ({e})") from None
    _static_fusion_by_default(data)
    try:
        return config_from_dict(data or {}, origin=str(path / CONFIG))
    except ConfigError as e:
        raise CheckpointError(
            str(e),
            hint="the checkpoint's config.yaml does not validate: edited by hand, or "
            "written by another avsrctl version?",
        ) from None


def read_meta(path: str | os.PathLike) -> dict:
    path = Path(path)
    meta = read_json(path / META)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path / META}: checkpoint format version {version!r}; this avsrctl {__version__} reads "
            f"up to {FORMAT_VERSION}",
            hint="upgrade avsrctl to read this checkpoint",
        )
    return meta


def load_weights_into(model: Any, path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Check `model.safetensors` against the model's trainable weights (names and shapes) and load it.

    Returns the checkpoint's meta. Differences are named in the error: a checkpoint from another
    config or modality set cannot load silently half-way.
    """
    path = Path(path)
    _check_folder(path, REQUIRED)
    meta = read_meta(path)
    state = read_tensors(path / WEIGHTS, device)
    require_finite(state, path / WEIGHTS)
    if hasattr(model, "keep_loaded"):  # frozen weights a run stored (it was initialised with them)
        model.keep_loaded(state)
    expected = model.trainable_state_dict()
    # a model built for decoding has no training-only parts: their weights stay in the file
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(TRAINING_ONLY)}
    problems = trainable_mismatches(expected, state)
    if problems:
        have = ",".join(meta.get("modalities") or []) or "?"
        now = ",".join(model_modalities(model)) or "?"
        raise CheckpointError(
            f"{path}: weights do not fit this model: {'; '.join(problems)} "
            f"(checkpoint modalities: {have}; model modalities: {now})",
            hint="use the config and --modality the checkpoint was trained with (its config.yaml)",
        )
    check_tokenizer(model, meta, str(path))
    model.load_trainable_state_dict(state)
    return meta


TRAINING_ONLY = ("lip_sync.",)  # parameter prefixes only `build_model(..., training=True)` builds


def check_tokenizer(model: Any, meta: dict, what: str) -> None:
    """The marker tokens the checkpoint added must have the same ids in `model`'s tokenizer."""
    added = meta.get("tokenizer_added")
    current = tokenizer_additions(model)
    if added is not None and current is not None and added != current:
        diff = sorted(set(added.items()) ^ set(current.items()))[:3]
        raise CheckpointError(
            f"{what}: tokenizer additions differ from the rebuilt tokenizer (e.g. {diff})",
            hint="the LLM/tokenizer named in its config.yaml differs from this model's",
        )


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """A checkpoint folder (or its model.safetensors) as a checked folder path; a crash that left it
    moved aside is undone first. A built-in name (`grid-small`) gives the folder shipped in the
    package, unless a real path of that name exists (avsrctl/pretrained.py)."""
    path = resolve_checkpoint(path)
    if path.is_file() and path.name == WEIGHTS:
        path = path.parent
    recover_replaced(path)
    _check_folder(path, REQUIRED)
    return path


def trained_modality(cfg: Config, meta: dict) -> str:
    """The modality a checkpoint was trained for: what decode, eval and transcribe use by default."""
    return meta.get("modality") or cfg.model.modality


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> tuple[Any, Config, dict]:
    """Rebuild the model from `config.yaml`, load its trainable weights and return (model, cfg, meta).

    The model is on `device` in eval mode (None or 'auto': a GPU when one is visible, else the
    CPU; `model.device` tells which). This is what decode, eval and transcribe call.
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from avsrctl.models.builder import build_model  # heavy; only when a checkpoint is really loaded

    path = checkpoint_folder(path)
    cfg = read_checkpoint_config(path)
    meta = read_meta(path)
    modalities = meta.get("modalities") or None
    # Built on `device`, so model.llm.dtype resolves for the device that runs it (see models/llm.py)
    model = build_model(cfg, modalities=modalities, device=device)
    load_weights_into(model, path, device="cpu")
    model.to(device)
    model.eval()
    return model, cfg, meta
