"""model.losses: the auxiliary losses' weights in one section, and the old keys that still load.

Before model.losses the weights were model.ctc_weight, model.articulation_weight,
model.lip_sync_weight and model.fusion.sync_weight. Config files, checkpoints' config.yaml,
`--set` and library overrides (adapt's recipes) with those keys keep working.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from avsrctl.config import OLD_KEYS, Config, LossesConfig, apply_overrides, config_from_dict, load_config
from avsrctl.errors import ConfigError

OLD_MODEL_SECTION = """model:
  modality: video
  ctc_weight: 0.5
  articulation_weight: 1.0
  lip_sync_weight: 0.25
  fusion: {weight: 0.5, sync_weight: 2.0, min_lip_sync: 0.4}
"""


def old_format(data: dict) -> dict:
    """A resolved config mapping written as the code before model.losses wrote it."""
    model = data["model"]
    losses = model.pop("losses")
    for old, new in OLD_KEYS.items():
        *parents, name = old.split(".")[1:]
        (model[parents[0]] if parents else model)[name] = losses[new.rsplit(".", 1)[1]]
    return data


def test_the_old_keys_of_a_config_file_move_to_model_losses(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(OLD_MODEL_SECTION, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.model.losses == LossesConfig(ctc=0.5, articulation=1.0, sync=2.0, lip_sync=0.25)
    assert cfg.model.fusion.min_lip_sync == 0.4  # the rest of the section is untouched
    written = yaml.safe_load(cfg.to_yaml())["model"]  # a resolved config has the new keys only
    assert written["losses"] == {"ctc": 0.5, "articulation": 1.0, "sync": 2.0, "lip_sync": 0.25}
    assert not {"ctc_weight", "articulation_weight", "lip_sync_weight"} & set(written)
    assert "sync_weight" not in written["fusion"]


def test_set_with_an_old_key_overrides_what_the_preset_says_with_the_new_one():
    assert load_config("default").model.losses.sync == 1.0  # presets use model.losses
    assert load_config("default", ["model.fusion.sync_weight=0"]).model.losses.sync == 0.0
    assert load_config("tiny", ["model.ctc_weight=0.5"]).model.losses.ctc == 0.5
    assert load_config("tiny", None, {"model.lip_sync_weight": 0.3}).model.losses.lip_sync == 0.3
    later = load_config("tiny", ["model.losses.ctc=0.2", "model.ctc_weight=0.7"])  # the later --set wins
    assert later.model.losses.ctc == 0.7


def test_an_old_key_given_by_set_is_named_in_its_error():
    with pytest.raises(ConfigError, match=r"--set model\.ctc_weight: model\.losses\.ctc: .*greater than or equal to 0"):
        load_config("tiny", ["model.ctc_weight=-1"])
    with pytest.raises(ConfigError, match=r"model\.losses\.sync needs model\.fusion\.weighting=dynamic"):
        load_config("tiny", ["model.fusion.weighting=static", "model.fusion.sync_weight=1"])


def test_an_old_key_and_its_new_one_must_agree():
    with pytest.raises(ConfigError, match=r"model\.ctc_weight \(0\.5\) is the old name of model\.losses\.ctc \(1\.0\)"):
        config_from_dict({"model": {"ctc_weight": 0.5, "losses": {"ctc": 1.0}}})
    assert config_from_dict({"model": {"ctc_weight": 0.5, "losses": {"ctc": 0.5}}}).model.losses.ctc == 0.5


def test_apply_overrides_takes_old_keys_on_old_and_new_mappings():
    """What adapt does: a checkpoint's config mapping, old or new, plus a recipe with the old keys."""
    new = Config().model_dump(mode="json")
    apply_overrides(new, {"model.fusion.sync_weight": 1.0, "model.ctc_weight": 0.5})
    assert config_from_dict(new).model.losses == LossesConfig(ctc=0.5, sync=1.0)
    old = old_format(Config().model_dump(mode="json"))
    apply_overrides(old, {"model.ctc_weight": 0.5})
    assert "ctc_weight" not in old["model"] and "sync_weight" not in old["model"]["fusion"]
    assert config_from_dict(old).model.losses == LossesConfig(ctc=0.5)


def test_the_built_in_models_config_loads_and_reads_the_same_in_the_old_format(tmp_path):
    from avsrctl.checkpoint import checkpoint_folder, read_checkpoint_config

    folder = checkpoint_folder("grid-small")
    raw = yaml.safe_load((Path(folder) / "config.yaml").read_text(encoding="utf-8"))
    cfg = read_checkpoint_config(folder)
    assert cfg.model.losses.sync > 0  # the fused model's sync classifier trained
    losses = raw["model"].pop("losses")  # the same config written before model.losses existed
    raw["model"]["fusion"]["sync_weight"] = losses["sync"]
    raw["model"].update(ctc_weight=losses["ctc"], articulation_weight=losses["articulation"])
    raw["model"]["lip_sync_weight"] = losses["lip_sync"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert read_checkpoint_config(tmp_path) == cfg


def test_a_checkpoint_written_in_the_old_format_loads_and_decodes_as_the_new_one(tmp_path):
    import torch
    from reliability_support import tiny_checkpoint
    from test_avsr import media_batch

    from avsrctl.checkpoint import load_checkpoint

    new = tiny_checkpoint(tmp_path / "new", "both", "final", "model.losses.sync=1.0", "model.losses.ctc=0.5")
    old = tmp_path / "old" / "final"
    old.parent.mkdir()
    import shutil

    shutil.copytree(new, old)
    data = old_format(yaml.safe_load((new / "config.yaml").read_text(encoding="utf-8")))
    (old / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert "losses" not in (old / "config.yaml").read_text(encoding="utf-8")
    results = []
    for folder in (new, old):
        model, cfg, _ = load_checkpoint(folder)
        assert cfg.model.losses == LossesConfig(ctc=0.5, sync=1.0) and model.loss_weights == {"ctc": 0.5, "sync": 1.0}
        with torch.no_grad():
            results.append([(r.text, r.score) for r in model.generate(media_batch(), "both")])
    assert results[0] == results[1]
