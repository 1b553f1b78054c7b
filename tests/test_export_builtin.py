"""The release script scripts/export_builtin.py: float16 export and load, the provenance and licence
notes, and its refusal to replace a better model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from pretrained_support import GOOD, results, root, standin  # noqa: F401  (fixtures)
from safetensors import safe_open

from avsrctl import pretrained
from avsrctl.checkpoint import WEIGHTS, load_checkpoint
from avsrctl.errors import AvsrError, CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import export_builtin as export  # noqa: E402


def test_export_writes_float16_weights_that_load_back_in_the_models_dtype(tmp_path, root, standin):
    folder = export.export_builtin(standin, "grid-small", results(tmp_path, GOOD), recipe="python recipes/grid.py")
    assert folder == root / "grid-small"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.yaml", "meta.json", WEIGHTS, "LICENCES.md", "PROVENANCE.md", "PROVENANCE.json"]
    )
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}  # readable once installed
    with safe_open(str(folder / WEIGHTS), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    prov = json.loads((folder / "PROVENANCE.json").read_text())
    assert prov["recipe"] == "python recipes/grid.py" and prov["figures"] == GOOD and prov["commit"] and prov["date"]
    assert prov["bytes"] == (folder / WEIGHTS).stat().st_size <= export.MAX_WEIGHT_BYTES
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


def test_exporter_replaces_the_model_only_when_the_key_figures_improve(tmp_path, root, standin, capsys):
    export.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    installed = (root / "grid-small" / "PROVENANCE.json").read_bytes()

    worse = {**GOOD, "s1-babble-5/both": {"wer": 0.125}}
    with pytest.raises(export.NotImproved) as e:
        export.export_builtin(standin, "grid-small", results(tmp_path, worse, "worse.json"))
    assert str(e.value) == (
        "built-in model grid-small not replaced: worse than the installed model on s1-babble-5/both 10.0% -> 12.5%"
    )
    assert "--force" in e.value.hint
    assert (root / "grid-small" / "PROVENANCE.json").read_bytes() == installed

    # the script says the same in one line, exit 1
    argv = ["export", str(standin), "--name", "grid-small", "--results", str(tmp_path / "worse.json")]
    assert export.main([*argv, "--root", str(root)]) == 1
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [f"error: {e.value}"]

    with pytest.raises(export.NotImproved, match="no key figure improves"):
        export.export_builtin(standin, "grid-small", results(tmp_path, GOOD, "same.json"))
    with pytest.raises(export.NotImproved, match="lack s1-babble-5/both"):
        export.export_builtin(standin, "grid-small", results(tmp_path, {"unseen/both": {"wer": 0.1}}))

    assert export.main([*argv, "--root", str(root), "--force"]) == 0
    assert (
        json.loads((root / "grid-small" / "PROVENANCE.json").read_text())["figures"]["s1-babble-5/both"]["wer"] == 0.125
    )
    better = {"s1-babble-5/both": {"wer": 0.125}, "unseen/both": {"wer": 0.2}}
    export.export_builtin(standin, "grid-small", results(tmp_path, better, "better.json"))  # one better, none worse
    assert json.loads((root / "grid-small" / "PROVENANCE.json").read_text())["figures"] == better


def test_weights_over_the_size_limit_are_refused_and_the_installed_model_kept(tmp_path, root, standin, monkeypatch):
    export.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    before = (root / "grid-small" / WEIGHTS).read_bytes()
    monkeypatch.setattr(export, "MAX_WEIGHT_BYTES", 1000)
    better = {"s1-babble-5/both": {"wer": 0.0}, "unseen/both": {"wer": 0.0}}
    with pytest.raises(AvsrError, match=r"take [\d,]+ bytes in float16, over the 1,000"):
        export.export_builtin(standin, "grid-small", results(tmp_path, better, "better.json"))
    assert (root / "grid-small" / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["grid-small"]  # no temporary folder left


def test_list_says_which_builtin_models_are_installed_and_their_key_figures(tmp_path, root, standin, capsys):
    export.main(["list"])
    assert capsys.readouterr().out.startswith("grid-small\tnot installed (run `make grid-recipe`)\t")
    export.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    export.main(["list"])
    assert capsys.readouterr().out.rstrip().endswith("\ts1-babble-5/both 10.0%, unseen/both 30.0%")


def test_a_failed_export_into_an_empty_root_leaves_nothing_behind(tmp_path, root, standin, monkeypatch):
    """The folder swap is the checkpoint format's write_folder: no half model, no temporary folder."""
    monkeypatch.setattr(export, "MAX_WEIGHT_BYTES", 1000)
    with pytest.raises(AvsrError, match="over the 1,000"):
        export.export_builtin(standin, "grid-small", results(tmp_path, GOOD))
    assert not root.exists() or list(root.iterdir()) == []
    with pytest.raises(CheckpointError, match="not installed"):
        pretrained.resolve_checkpoint("grid-small")
