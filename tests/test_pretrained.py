"""Built-in checkpoints (avsrctl/pretrained.py): name resolution everywhere a checkpoint is read.
The models are installed with the release script scripts/export_builtin.py (tests/test_export_builtin.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from pretrained_support import GOOD, results, root, standin  # noqa: F401  (fixtures)
from reliability_support import cli_error  # noqa: F401  (a fixture)

from avsrctl import pretrained
from avsrctl.checkpoint import checkpoint_folder, load_checkpoint
from avsrctl.cli.main import run as run_cli
from avsrctl.data.samples import write_sample_manifest
from avsrctl.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from export_builtin import export_builtin  # noqa: E402


def test_unknown_name_is_one_line_listing_the_builtin_names(root):
    with pytest.raises(CheckpointError) as e:
        pretrained.resolve_checkpoint("grid-smal")
    assert str(e.value) == "no checkpoint folder or built-in model named 'grid-smal' (built-in: grid-small)"
    assert e.value.hint == "did you mean 'grid-small'?"


def test_a_missing_path_is_still_reported_as_a_path(tmp_path, root):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*runs/a/final"):
        checkpoint_folder(tmp_path / "runs" / "a" / "final")


def test_a_builtin_that_is_not_installed_says_so_in_every_command(root, cli_error, tmp_path):  # noqa: F811
    with pytest.raises(CheckpointError) as e:
        pretrained.resolve_checkpoint("grid-small")
    assert str(e.value) == "built-in model grid-small is not installed in this build; run `make grid-recipe`"
    tsv = write_sample_manifest(tmp_path)
    for argv in (
        ["inspect-params", "--checkpoint", "grid-small"],
        ["decode", "--checkpoint", "grid-small", "--tsv", tsv],
        ["eval", "--checkpoint", "grid-small", "--tsv", tsv],
    ):
        cli_error(argv, 1, "built-in model grid-small is not installed", "`make grid-recipe`", hint="exports it")


def test_init_from_and_inspect_params_take_the_builtin_name(tmp_path, root, standin, capsys):
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model
    from avsrctl.training.run import init_weights_from

    export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    cfg = load_config(standin / "config.yaml")
    fresh = build_model(cfg)
    [(path, names)] = init_weights_from(fresh, ["grid-small"])
    assert path == root / "grid-small" and len(names) == len(fresh.trainable_state_dict())
    exported, _, _ = load_checkpoint("grid-small")
    for k, v in exported.trainable_state_dict().items():
        assert torch.equal(fresh.trainable_state_dict()[k], v), k

    assert run_cli(["inspect-params", "--checkpoint", "grid-small", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"].startswith("checkpoint grid-small")


def test_a_real_path_shadows_the_builtin_name(tmp_path, root, standin, monkeypatch):
    export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(standin, tmp_path / "grid-small")
    assert checkpoint_folder("grid-small").resolve() == (tmp_path / "grid-small").resolve()
    assert pretrained.outputs_beside("grid-small") == pretrained.Path("grid-small")
    shutil.rmtree(tmp_path / "grid-small")
    assert checkpoint_folder("grid-small") == root / "grid-small"
    # decode's default output folder never lands inside the installed package
    assert pretrained.outputs_beside("grid-small") == pretrained.Path("runs") / "grid-small"
