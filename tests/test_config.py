from __future__ import annotations

import re

import pytest
import yaml

from avsrctl.config import Config, load_config, preset_names
from avsrctl.errors import ConfigError


@pytest.mark.parametrize("name", ["default", "tiny", "offline-small"])
def test_every_shipped_preset_loads(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    assert cfg.model.modality in ("audio", "video", "both")


def test_presets_are_listed():
    assert {"default", "tiny", "offline-small"} <= set(preset_names())


def test_precedence_defaults_yaml_set_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.5, "max_epochs": 3}}))
    cfg = load_config(path)
    assert cfg.train.lr == 0.5 and cfg.train.max_epochs == 3 and cfg.train.grad_accum == 1  # yaml over defaults
    cfg = load_config(path, ["train.lr=0.25"])
    assert cfg.train.lr == 0.25  # --set over yaml
    cfg = load_config(path, ["train.lr=0.25"], {"train.lr": 0.125, "train.max_epochs": None})
    assert cfg.train.lr == 0.125 and cfg.train.max_epochs == 3  # flags over --set; None flags ignored


def test_unknown_key_names_nearest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'") as e:
        load_config(path)
    assert "train.lr" in e.value.hint


def test_nested_unknown_key_hint():
    with pytest.raises(ConfigError) as e:
        load_config("tiny", ["model.llm.lora.rnk=3"])
    assert "model.llm.lora.rank" in e.value.hint


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.modality=audi", "model.modality"),
        ("train.max_epochs=0", "train.max_epochs"),
        ("train.save_steps=-5", "train.save_steps"),
        ("train.lr=fast", "train.lr"),
        ("data.max_batch_size=0", "data.max_batch_size"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config("tiny", [override])


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny", ["train.lr"])


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(path)


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError) as e:
        load_config("tinny")
    assert "tiny" in e.value.hint


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tiny", ["train.lr=0.01"])
    out = tmp_path / "run" / "config.yaml"
    cfg.save(out)
    assert load_config(out) == cfg


def _float_fields(model=Config, prefix: str = "") -> list[str]:
    """Dotted keys of every float field of the config (sections recursed), e.g. 'train.lr'."""
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _float_fields(ann, f"{prefix}{name}.")
        elif ann is float or float in getattr(ann, "__args__", ()):
            keys.append(f"{prefix}{name}")
    return keys


@pytest.mark.parametrize("value", ["inf", "-inf", ".inf", "nan"])
@pytest.mark.parametrize("key", _float_fields())
def test_non_finite_numbers_are_refused_in_every_float_field(key, value):
    """`train.lr=inf` used to validate (gt=0 holds for inf) and train a run into NaN weights; no
    float setting means anything at inf or nan (issue: a diverged run is called finished)."""
    with pytest.raises(ConfigError, match=rf"^--set: {re.escape(key)}: .*finite") as e:
        load_config("tiny", [f"{key}={value}"])
    assert "\n" not in str(e.value)


def test_an_unknown_section_in_set_blames_set_not_the_preset():
    with pytest.raises(ConfigError, match=r"^--set: unknown key 'nosection'") as e:
        load_config("tiny", ["nosection.x=1"])
    assert "preset" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^--set: unknown key 'train.lrr'"):  # a section --set made under a known one
        load_config("tiny", ["train.lrr.x=1"])
