"""Validated configuration: pydantic models, YAML presets, `--set` overrides.

Precedence, lowest to highest: field defaults < YAML (`--config`, a path or a preset name)
< `--set section.key=value` < explicit command-line flags. Every model forbids unknown keys,
so a typo is an error that names the key and the nearest valid one.

The sections live in sections.py (data, train, decode) and model.py (the model, with the
auxiliary losses' weights in `model.losses`); this module holds the whole `Config` and the
loading. Keys a config used to have (model.OLD_KEYS) still load, from files, checkpoints and `--set`.

This package must not import torch: `avsrctl --help` imports it.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from avsrctl.config.model import (
    OLD_KEYS,
    AudioEncoderConfig,
    ConnectorConfig,
    FusionConfig,
    LLMConfig,
    LoraConfig,
    LossesConfig,
    ModelConfig,
    VideoEncoderConfig,
    move_old_loss_keys,
    new_key,
)
from avsrctl.config.sections import (
    MODALITIES,
    NORMALIZERS,
    DataConfig,
    DecodeConfig,
    Modality,
    Normalizer,
    TrainConfig,
    _Section,
)
from avsrctl.errors import ConfigError

__all__ = [
    "MODALITIES",
    "NORMALIZERS",
    "OLD_KEYS",
    "AudioEncoderConfig",
    "Config",
    "ConnectorConfig",
    "DataConfig",
    "DecodeConfig",
    "FusionConfig",
    "LLMConfig",
    "LoraConfig",
    "LossesConfig",
    "Modality",
    "ModelConfig",
    "Normalizer",
    "TrainConfig",
    "VideoEncoderConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "preset_names",
    "read_config_source",
]

PRESETS_PACKAGE = "avsrctl.configs"
DEFAULT_PRESET = "default"


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)

    @model_validator(mode="after")
    def _check(self) -> "Config":
        losses = self.model.losses
        if self.train.objective == "ctc" and losses.ctc <= 0:
            raise ValueError("train.objective 'ctc' needs the CTC heads: set model.losses.ctc above 0 (e.g. 1)")
        if losses.articulation > 0 and self.model.modality == "audio":
            raise ValueError("model.losses.articulation needs a video stream; model.modality is 'audio'")
        if losses.sync > 0 and self.model.fusion.weighting != "dynamic":
            raise ValueError("model.losses.sync needs model.fusion.weighting=dynamic")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: Path) -> None:
        """Write the resolved config (atomically, so a crash never leaves half a file)."""
        from avsrctl.atomic import write_atomic

        write_atomic(path, self.to_yaml())


# -------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml")
    )


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of sections (data, model, train, decode), got {type(data).__name__}"
        )
    return data


def read_config_source(name_or_path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The raw mapping of a YAML path or preset name (None: the default preset)."""
    if name_or_path is None:
        name_or_path = DEFAULT_PRESET
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}", hint=f"presets: {', '.join(preset_names())}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        data = _read_yaml(text, str(path))
        if not data:  # an empty file would silently mean every default (the hub GPU recipe)
            raise ConfigError(
                f"{path}: empty config file (no sections)",
                hint=f"write the sections to change (data, model, train, decode), or name a preset: "
                f"{', '.join(preset_names())}",
            )
        return data, str(path)
    name = str(name_or_path)
    if name not in preset_names():
        close = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"presets: {', '.join(preset_names())}"
        raise ConfigError(f"no config file or preset named '{name}'", hint=hint)
    text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return _read_yaml(text, f"preset '{name}'"), f"preset '{name}'"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected section.key=value", hint="e.g. --set train.lr=3e-4")
    key, _, raw = item.partition("=")
    keys = [k for k in key.strip().split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"--set '{item}': key must name a section and a field, like train.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return keys, value


def _move_old_keys(data: dict[str, Any], origin: str) -> None:
    """Move a raw mapping's old loss-weight keys (OLD_KEYS) to model.losses, in place."""
    if isinstance(data.get("model"), dict):
        try:
            data["model"] = move_old_loss_keys(data["model"])
        except ValueError as e:
            raise ConfigError(f"{origin}: {e}") from None


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | dict[str, Any], origin: str = "config"
) -> dict[str, Any]:
    """Apply `section.key=value` strings (or a {dotted key: value} mapping) to a raw mapping.

    Old keys (OLD_KEYS), in `data` or in `overrides`, are moved to their new places first, so an
    override given with an old key replaces the value however `data` names it."""
    _move_old_keys(data, origin)
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    for keys, value in items:
        keys = new_key(keys if isinstance(keys, str) else ".".join(keys)).split(".")
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys at the location of an unknown-key error, for the 'did you mean' hint."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _yaml_line(origin: str, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the YAML file `origin` (None when not a file or not found)."""
    path = Path(origin)
    if not path.is_file():
        return None
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def _format_validation_error(e: ValidationError, origin: str, sources: dict[str, str] | None = None) -> ConfigError:
    """One line naming where the bad value came from (file:line, --set or a flag), the key and the problem.

    `sources` maps dotted keys set by `--set` or command-line flags to a label for them.
    """
    err = e.errors()[0]
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = (sources or {}).get(key)
    if where is None:
        line = _yaml_line(origin, loc)
        # an unknown section (or key) that `--set nosection.x=1` made is not the preset's doing
        made_by = sorted({v for k, v in (sources or {}).items() if k.startswith(key + ".")})
        if line:
            where = f"{origin}:{line}"
        elif err["type"] == "extra_forbidden" and made_by:
            where = " + ".join(made_by)
        else:
            where = origin
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _field_names(Config, loc), n=1)
        hint = f"did you mean '{'.'.join(str(p) for p in loc[:-1] + (close[0],))}'?" if close else None
        return ConfigError(f"{where}: unknown key '{key}'", hint=hint)
    more = f"; {len(e.errors()) - 1} more error(s)" if len(e.errors()) > 1 else ""
    if err["type"] == "value_error" and err.get("ctx", {}).get("error") is not None:
        # a check across fields (a model validator) on the section at `key`
        labels = sorted({v for k, v in (sources or {}).items() if k.startswith(key + ".")})
        where = " + ".join([where, *labels])
        text = str(err["ctx"]["error"])
        return ConfigError(f"{where}: {text if key + '.' in text else f'{key}: {text}'}{more}")
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    return ConfigError(f"{where}: {key}: {err['msg']}{shown}{more}")


def load_config(
    name_or_path: str | Path | None = None, overrides: list[str] | None = None, flags: dict[str, Any] | None = None
) -> Config:
    """Defaults < YAML < `--set` overrides < explicit flags (a {dotted key: value} mapping; None values are ignored)."""
    data, origin = read_config_source(name_or_path)
    _move_old_keys(data, origin)
    sources: dict[str, str] = {}
    if overrides:
        parsed = {".".join(keys): value for keys, value in (_parse_override(o) for o in overrides)}
        apply_overrides(data, parsed, origin)
        # an old key is named in the message: `--set model.ctc_weight: model.losses.ctc: ...`
        sources.update({new_key(k): f"--set {k}" if k in OLD_KEYS else "--set" for k in parsed})
    if flags:
        given = {k: v for k, v in flags.items() if v is not None}
        apply_overrides(data, given, origin)
        sources.update({new_key(k): "command line" for k in given})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _format_validation_error(e, origin, sources) from None


def config_from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _format_validation_error(e, origin) from None
