"""Built-in checkpoints (avsrctl/pretrained.py): name resolution everywhere a checkpoint is read,
float16 export and load, and the exporter's refusal to replace a better model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from pretrained_support import standin_checkpoint
from reliability_support import cli_error  # noqa: F401  (a fixture)
from safetensors import safe_open

from avsrctl import pretrained
from avsrctl.checkpoint import WEIGHTS, checkpoint_folder, load_checkpoint
from avsrctl.cli.main import run as run_cli
from avsrctl.data.samples import write_sample_manifest
from avsrctl.errors import AvsrError, CheckpointError

GOOD = {"s1-babble-5/both": {"wer": 0.10, "errors": 1, "words": 10}, "unseen/both": {"wer": 0.30}}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty folder of built-in models in place of the package's."""
    folder = tmp_path / "builtin"
    monkeypatch.setattr(pretrained, "BUILTIN_ROOT", folder)
    return folder


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return standin_checkpoint(tmp_path_factory.mktemp("run"))


def results(tmp_path, figures: dict, name: str = "results.json"):
    path = tmp_path / name
    path.write_text(json.dumps({**figures, "video-weight/heldout": 0.4}))
    return path


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


def test_export_writes_float16_weights_that_load_back_in_the_models_dtype(tmp_path, root, standin):
    folder = pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD), recipe="python recipes/grid.py")
    assert folder == root / "grid-small"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.yaml", "meta.json", WEIGHTS, "LICENCES.md", "PROVENANCE.md", "PROVENANCE.json"]
    )
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}  # readable once installed
    with safe_open(str(folder / WEIGHTS), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    prov = json.loads((folder / "PROVENANCE.json").read_text())
    assert prov["recipe"] == "python recipes/grid.py" and prov["figures"] == GOOD and prov["commit"] and prov["date"]
    assert prov["bytes"] == (folder / WEIGHTS).stat().st_size <= pretrained.MAX_WEIGHT_BYTES
    licences = (folder / "LICENCES.md").read_text()
    assert all(s in licences for s in ("Apache-2.0", "MIT", "CC BY 4.0", "SmolLM2", "Whisper tiny.en"))

    original, _, _ = load_checkpoint(standin)
    loaded, _, meta = load_checkpoint("grid-small")
    assert meta["builtin"] == "grid-small" and meta["weights_dtype"] == "float16"
    want, got = original.trainable_state_dict(), loaded.trainable_state_dict()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype == torch.float32, k
        torch.testing.assert_close(got[k], want[k], rtol=1e-3, atol=1e-4)  # float16 keeps ~3 digits
    assert any(not torch.equal(got[k], want[k]) for k in want)  # really stored in float16


def test_init_from_and_inspect_params_take_the_builtin_name(tmp_path, root, standin, capsys):
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model
    from avsrctl.training.run import init_weights_from

    pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
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
    pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(standin, tmp_path / "grid-small")
    assert checkpoint_folder("grid-small").resolve() == (tmp_path / "grid-small").resolve()
    assert pretrained.outputs_beside("grid-small") == pretrained.Path("grid-small")
    shutil.rmtree(tmp_path / "grid-small")
    assert checkpoint_folder("grid-small") == root / "grid-small"
    # decode's default output folder never lands inside the installed package
    assert pretrained.outputs_beside("grid-small") == pretrained.Path("runs") / "grid-small"


def test_exporter_replaces_the_model_only_when_the_key_figures_improve(tmp_path, root, standin, capsys):
    pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    installed = (root / "grid-small" / "PROVENANCE.json").read_bytes()

    worse = {**GOOD, "s1-babble-5/both": {"wer": 0.125}}
    with pytest.raises(pretrained.NotImproved) as e:
        pretrained.export_builtin(standin, "grid-small", results(tmp_path, worse, "worse.json"))
    assert str(e.value) == (
        "built-in model grid-small not replaced: worse than the installed model on s1-babble-5/both 10.0% -> 12.5%"
    )
    assert "--force" in e.value.hint
    assert (root / "grid-small" / "PROVENANCE.json").read_bytes() == installed

    # the script says the same in one line, exit 1
    argv = ["export", str(standin), "--name", "grid-small", "--results", str(tmp_path / "worse.json")]
    assert pretrained.main([*argv, "--root", str(root)]) == 1
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [f"error: {e.value}"]

    with pytest.raises(pretrained.NotImproved, match="no key figure improves"):
        pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD, "same.json"))
    with pytest.raises(pretrained.NotImproved, match="lack s1-babble-5/both"):
        pretrained.export_builtin(standin, "grid-small", results(tmp_path, {"unseen/both": {"wer": 0.1}}))

    assert pretrained.main([*argv, "--root", str(root), "--force"]) == 0
    assert (
        json.loads((root / "grid-small" / "PROVENANCE.json").read_text())["figures"]["s1-babble-5/both"]["wer"] == 0.125
    )
    better = {"s1-babble-5/both": {"wer": 0.125}, "unseen/both": {"wer": 0.2}}
    pretrained.export_builtin(standin, "grid-small", results(tmp_path, better, "better.json"))  # one better, none worse
    assert json.loads((root / "grid-small" / "PROVENANCE.json").read_text())["figures"] == better


def test_weights_over_the_size_limit_are_refused_and_the_installed_model_kept(tmp_path, root, standin, monkeypatch):
    pretrained.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    before = (root / "grid-small" / WEIGHTS).read_bytes()
    monkeypatch.setattr(pretrained, "MAX_WEIGHT_BYTES", 1000)
    better = {"s1-babble-5/both": {"wer": 0.0}, "unseen/both": {"wer": 0.0}}
    with pytest.raises(AvsrError, match=r"take [\d,]+ bytes in float16, over the 1,000"):
        pretrained.export_builtin(standin, "grid-small", results(tmp_path, better, "better.json"))
    assert (root / "grid-small" / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["grid-small"]  # no temporary folder left
