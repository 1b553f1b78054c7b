from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from training_support import FakeAVSR, fake_batch

from avsrctl import checkpoint as ckpt
from avsrctl.config import load_config
from avsrctl.errors import CheckpointError
from avsrctl.training import run_folder, state
from avsrctl.training.schedule import build_optimizer, optimizer_param_order


@pytest.fixture
def cfg():
    return load_config("tiny")


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return FakeAVSR(**kw)


def _save(out, name, model, cfg, step=1, **kw):
    return ckpt.save_checkpoint(out, name, model=model, cfg=cfg, meta={"modality": "both", "step": step}, **kw)


def test_save_writes_a_complete_folder_and_latest(tmp_path, cfg):
    model = _model()
    path = _save(tmp_path, "epoch-0001", model, cfg, trainer_state={"step": 1}, optimizer_tensors={})
    assert sorted(p.name for p in path.iterdir()) == sorted(ckpt.RESUMABLE)
    assert ckpt.read_latest_name(tmp_path) == "epoch-0001"
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["modalities"] == ["audio", "video"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_only_trainable_weights_are_stored_and_reload_exactly(tmp_path, cfg):
    model = _model(0)
    path = _save(tmp_path, "final", model, cfg)
    stored = ckpt.read_tensors(path / ckpt.WEIGHTS)
    assert set(stored) == set(model.trainable_state_dict())
    assert not any(k.startswith(("audio_encoder.", "video_encoder.", "llm.head", "llm.pos")) for k in stored)
    other = _model(1)
    assert not torch.equal(other.llm.lora_A.weight, model.llm.lora_A.weight)
    meta = ckpt.load_weights_into(other, path)
    assert meta["step"] == 1
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(other.trainable_state_dict()[k], v)


def test_mismatched_model_is_refused_naming_the_difference(tmp_path, cfg):
    path = _save(tmp_path, "final", _model(width=32), cfg)
    with pytest.raises(CheckpointError, match=r"shape mismatches .*audio_connector\.0\.weight"):
        ckpt.load_weights_into(_model(width=16), path)


def test_missing_file_is_named(tmp_path, cfg):
    path = _save(tmp_path, "final", _model(), cfg)
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="missing meta.json"):
        ckpt.load_weights_into(_model(), path)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_weights_into(_model(), tmp_path / "nope")


def test_planted_pickle_is_refused_and_never_unpickled(tmp_path, cfg, monkeypatch):
    model = _model()
    path = _save(tmp_path, "final", model, cfg)
    torch.save(model.trainable_state_dict(), path / ckpt.WEIGHTS)  # a pickle under the safetensors name
    called = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: called.append(1))
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_weights_into(_model(), path)
    (path / ckpt.WEIGHTS).unlink()
    torch.save(model.trainable_state_dict(), path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
        ckpt.load_weights_into(_model(), path)
    assert not called


def test_newer_format_is_refused(tmp_path, cfg):
    path = _save(tmp_path, "final", _model(), cfg)
    meta = json.loads((path / "meta.json").read_text())
    meta["format_version"] = ckpt.FORMAT_VERSION + 1
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version"):
        ckpt.read_meta(path)


def test_crash_during_save_leaves_no_half_checkpoint(tmp_path, cfg, monkeypatch):
    model = _model()
    _save(tmp_path, "step-000001", model, cfg, trainer_state={"step": 1}, optimizer_tensors={})
    real_save = ckpt.save_file
    calls = []

    def crash_on_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the optimizer file, after the weights were written
            raise OSError("disk full (simulated)")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", crash_on_second)
    with pytest.raises(OSError, match="simulated"):
        _save(
            tmp_path,
            "step-000002",
            model,
            cfg,
            step=2,
            trainer_state={"step": 2},
            optimizer_tensors={"x": torch.zeros(1)},
        )
    assert not (tmp_path / "step-000002").exists()
    assert ckpt.read_latest_name(tmp_path) == "step-000001"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000001"]
    assert ckpt.find_latest(tmp_path).name == "step-000001"
    monkeypatch.setattr(ckpt, "save_file", real_save)  # the next save cleans the leftover and succeeds
    _save(tmp_path, "step-000002", model, cfg, step=2, trainer_state={"step": 2}, optimizer_tensors={})
    assert ckpt.find_latest(tmp_path).name == "step-000002"
    assert not list(tmp_path.glob(".tmp-*"))


def test_overwriting_best_replaces_it(tmp_path, cfg):
    _save(tmp_path, "best", _model(0), cfg, step=1)
    _save(tmp_path, "best", _model(1), cfg, step=5)
    assert json.loads((tmp_path / "best" / "meta.json").read_text())["step"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_find_latest_falls_back_to_a_scan(tmp_path, cfg):
    m = _model()
    for step in (2, 4):
        _save(tmp_path, run_folder.step_name(step), m, cfg, step=step, trainer_state={}, optimizer_tensors={})
    (tmp_path / "latest").write_text("step-000009\n")  # names a folder that is gone
    assert ckpt.find_latest(tmp_path).name == "step-000004"
    assert ckpt.find_latest(tmp_path / "empty") is None


def test_keep_last_prunes_periodic_only(tmp_path, cfg):
    m = _model()
    for i, name in enumerate(["epoch-0001", "step-000004", "best", "epoch-0002", "step-000008", "final"]):
        _save(tmp_path, name, m, cfg, step=i)
    deleted = run_folder.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in deleted) == ["epoch-0001", "step-000004"]
    assert sorted(p.name for p in ckpt.list_checkpoints(tmp_path)) == ["best", "epoch-0002", "final", "step-000008"]


def test_optimizer_state_round_trips_by_parameter_name(tmp_path):
    model = _model()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer(named, lr=1e-2, weight_decay=0.01)
    model(fake_batch(), "both").loss.backward()
    opt.step()
    names = optimizer_param_order(named)
    tensors, js = state.flatten_optimizer(opt.state_dict(), names)
    from safetensors.torch import load_file, save_file

    save_file(tensors, str(tmp_path / "opt.safetensors"))
    js = json.loads(json.dumps(js))
    restored = state.unflatten_optimizer(load_file(str(tmp_path / "opt.safetensors")), js, names)
    opt2 = build_optimizer(named, lr=1e-2, weight_decay=0.01)
    opt2.load_state_dict(restored)
    before, after = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert sorted(before) == sorted(after) and len(before) == len(names)
    for i in before:
        assert set(before[i]) == set(after[i])
        assert all(torch.equal(before[i][k], after[i][k]) for k in before[i])
    with pytest.raises(CheckpointError, match="other parameters"):
        state.unflatten_optimizer(tensors, js, names[:-1])


def test_rng_states_round_trip_through_json():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    saved = json.loads(json.dumps(state.capture_rng()))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    state.restore_rng(saved)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_a_kill_between_the_two_renames_of_a_replaced_checkpoint_is_recovered(tmp_path):
    """`best` replaced: old moved to `.old-best`, killed before the new one was renamed in."""
    from avsrctl.checkpoint import recover_replaced

    best = tmp_path / "best"
    old = tmp_path / ".old-best"
    old.mkdir()
    (old / "meta.json").write_text("{}")
    recover_replaced(best)
    assert (best / "meta.json").read_text() == "{}" and not old.exists()
    recover_replaced(best)  # nothing to do when the checkpoint is in place
    assert best.is_dir()


def test_a_tiny_model_round_trips_through_the_checkpoint_format(tmp_path):
    """What `train` writes, `load_checkpoint` (decode, eval, transcribe) rebuilds: same config, same weights."""
    from avsrctl.models.builder import build_model

    cfg = load_config("tiny", ["model.modality=audio"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(torch.randn_like(p))  # away from any initialisation a rebuild could reproduce
    path = ckpt.save_checkpoint(tmp_path, "final", model=model, cfg=cfg, meta={"modality": "audio", "step": 3})
    assert sorted(p.name for p in path.iterdir()) == sorted(ckpt.REQUIRED)
    loaded, loaded_cfg, meta = ckpt.load_checkpoint(path)
    assert meta["step"] == 3 and meta["modalities"] == ["audio"] and loaded.modalities == ("audio",)
    assert loaded_cfg.model == cfg.model
    want, got = model.trainable_state_dict(), loaded.trainable_state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k].cpu(), want[k].cpu()) for k in want)


def test_a_checkpoint_from_before_dynamic_fusion_loads_with_its_static_weight(tmp_path):
    """Configs written before `model.fusion.weighting` existed name no weighting; they were static."""
    import yaml

    from avsrctl.models.builder import build_model

    cfg = load_config("tiny", ["model.modality=both", "model.fusion.weighting=static"])
    torch.manual_seed(0)
    model = build_model(cfg)
    path = ckpt.save_checkpoint(tmp_path, "final", model=model, cfg=cfg, meta={"modality": "both", "step": 1})
    data = yaml.safe_load((path / "config.yaml").read_text())
    del data["model"]["fusion"]["weighting"]  # as an older avsrctl wrote it
    (path / "config.yaml").write_text(yaml.safe_dump(data))
    loaded, loaded_cfg, _ = ckpt.load_checkpoint(path)
    assert loaded_cfg.model.fusion.weighting == "static" and loaded.fusion.weighting == "static"
    torch.testing.assert_close(loaded.fusion.audio_weight(), model.fusion.audio_weight())


class _Built(Exception):
    """Raised by a build_model spy once it has seen its arguments."""


def test_a_checkpoint_is_rebuilt_on_the_device_it_is_loaded_to(tmp_path, monkeypatch):
    """model.llm.dtype resolves for the device the model runs on: a GPU load must build for the GPU
    (bfloat16 there), not build for the CPU (float32) and move the float32 model afterwards."""
    from avsrctl.models import builder

    cfg = load_config("tiny", ["model.modality=audio"])
    path = ckpt.save_checkpoint(
        tmp_path, "final", model=builder.build_model(cfg), cfg=cfg, meta={"modality": "audio", "step": 1}
    )
    seen = {}

    def spy(cfg, modalities=None, device="cpu"):
        seen["device"] = str(device)
        raise _Built

    monkeypatch.setattr(builder, "build_model", spy)
    with pytest.raises(_Built):
        ckpt.load_checkpoint(path, device="cuda:0")
    assert seen["device"] == "cuda:0"


def test_non_finite_weights_are_refused_on_load_naming_the_file_and_tensor(tmp_path, cfg):
    """A diverged run's weights (NaN/inf) never load as a model: decode, eval, transcribe and
    --init-from all read weights through here."""
    from safetensors.torch import save_file

    from avsrctl.training.run import init_weights_from

    path = _save(tmp_path, "final", _model(), cfg)
    state = ckpt.read_tensors(path / ckpt.WEIGHTS)
    state["fusion.weight"][3] = float("nan")
    save_file(state, str(path / ckpt.WEIGHTS))
    for load in (lambda: ckpt.load_weights_into(_model(), path), lambda: init_weights_from(_model(), [path])):
        with pytest.raises(CheckpointError) as e:
            load()
        message = str(e.value)
        assert str(path / ckpt.WEIGHTS) in message and "fusion.weight" in message and "non-finite" in message
        assert "\n" not in message and e.value.hint


def test_non_finite_weights_are_never_written(tmp_path, cfg):
    model = _model()
    with torch.no_grad():
        model.llm.lora_A.weight[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"non-finite .*llm\.lora_A\.weight"):
        _save(tmp_path, "final", model, cfg)
    assert ckpt.list_checkpoints(tmp_path) == [] and not list(tmp_path.iterdir())


def test_write_folder_replaces_a_folder_whole_or_leaves_the_old_one(tmp_path):
    from avsrctl.atomic import write_folder

    final = tmp_path / "model"
    write_folder(final, lambda tmp: (tmp / "a.txt").write_text("one"), mode=0o644)
    assert (final / "a.txt").read_text() == "one" and (final / "a.txt").stat().st_mode & 0o777 == 0o644

    def half_then_fail(tmp):
        (tmp / "a.txt").write_text("two")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        write_folder(final, half_then_fail)
    assert (final / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .tmp- or .old- folder left
    write_folder(final, lambda tmp: (tmp / "b.txt").write_text("two"))
    assert [p.name for p in final.iterdir()] == ["b.txt"]  # replaced, not merged
