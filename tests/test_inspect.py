from __future__ import annotations

import json

import pytest

from avsrctl.cli.main import run
from avsrctl.config import load_config
from avsrctl.models.builder import build_model
from avsrctl.models.inspect import param_report

ALL = {"audio", "video", "both"}
PREFIXES = {  # an independent map from parameter names to components, for the direct count
    "audio encoder": ("audio_encoder.",),
    "audio connector": ("audio_connector.",),
    "video encoder": ("video_encoder.",),
    "video connector": ("video_connector.",),
    "fusion": ("fusion.",),
    "marker embeddings": ("marker_embeddings",),
}
USES = {
    "audio": {"audio encoder", "audio connector"},
    "video": {"video encoder", "video connector"},
    "both": {"audio encoder", "audio connector", "video encoder", "video connector", "fusion"},
}


@pytest.fixture(scope="module")
def model():
    return build_model(load_config("tiny"), ALL)


def _direct(model, active: set[str]) -> tuple[int, int]:
    total = trainable = 0
    for name, p in model.named_parameters():
        in_llm = name.startswith("llm.")
        owner = next((c for c, pre in PREFIXES.items() if name.startswith(pre)), None)
        if in_llm or owner in active or owner == "marker embeddings":
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    return total, trainable


@pytest.mark.parametrize("modality", ["audio", "video", "both"])
def test_counts_equal_a_direct_count_of_parameters(model, modality):
    report = param_report(model, modality)
    assert report.built_total == sum(p.numel() for p in model.parameters())
    assert report.built_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (report.active_total, report.active_trainable) == _direct(model, USES[modality])
    rows = {r.name: r for r in report.rows}
    assert {n for n, r in rows.items() if r.active} == USES[modality] | {
        "LLM base",
        "LoRA adapters",
        "marker embeddings",
    }
    lora = sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" in n)
    assert rows["LoRA adapters"].total == rows["LoRA adapters"].trainable == lora > 0
    assert (
        rows["LLM base"].trainable == 0
        and rows["LLM base"].total == sum(p.numel() for p in model.llm.parameters()) - lora
    )
    assert rows["audio encoder"].status == "frozen" and rows["audio connector"].status == "trainable"
    assert rows["audio connector"].input_dim == model.audio_encoder.output_dim
    assert rows["LLM base"].output_dim == len(model.tokenizer)


def test_json_output_parses_and_matches_the_model(model, capsys):
    assert run(["inspect-params", "--config", "tiny", "--modality", "video", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout holds only the JSON document
    assert data["modality"] == "video"
    assert data["built_total"]["params"] == sum(p.numel() for p in model.parameters())
    names = [c["name"] for c in data["components"]]
    assert names[:5] == ["audio encoder", "audio connector", "video encoder", "video connector", "fusion"]
    active = {c["name"] for c in data["components"] if c["active"]}
    assert "video connector" in active and "audio connector" not in active


def test_table_lists_components_and_totals(capsys):
    assert run(["inspect-params", "-c", "tiny", "-m", "both", "--set", "model.llm.dtype=bfloat16"]) == 0
    out = capsys.readouterr().out
    for name in ("audio encoder", "video connector", "fusion", "LoRA adapters", "LLM base", "total (both)"):
        assert name in out
    assert "float32 on cpu" in out  # the bf16 request is reported, not silently ignored


def test_set_overrides_change_the_model(capsys):
    assert run(["inspect-params", "-c", "tiny", "-f", "json", "--set", "model.llm.lora.rank=8"]) == 0
    rows = {c["name"]: c for c in json.loads(capsys.readouterr().out)["components"]}
    assert "r=8" in rows["LoRA adapters"]["detail"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-c", "tiny", "-f", "xml"], "--format"),
        (["-c", "tiny", "-m", "lips"], "--modality"),
        (["-c", "tiny", "--checkpoint", "x"], "not both"),
        (["--checkpoint", "x", "--set", "train.lr=1"], "--set applies"),
    ],
)
def test_bad_arguments_are_usage_errors(args, message, capsys):
    assert run(["inspect-params", *args]) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_is_inspected_with_its_own_config(tmp_path, capsys):
    from avsrctl import checkpoint

    cfg = load_config("tiny", ["model.modality=audio"])
    trained = build_model(cfg)
    path = checkpoint.save_checkpoint(tmp_path, "final", model=trained, cfg=cfg, meta={"step": 7, "epoch": 1})
    assert run(["inspect-params", "--checkpoint", str(path), "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in data["components"]}
    assert data["modality"] == "audio" and "step 7" in data["source"]
    assert not rows["video encoder"]["built"] and rows["video encoder"]["total"] == 0
    assert data["built_total"]["params"] == sum(p.numel() for p in trained.parameters())
    assert run(["inspect-params", "--checkpoint", str(path), "-m", "video"]) == 2
    assert "serves audio" in capsys.readouterr().err


def test_the_llm_is_reported_in_the_dtype_train_builds_on_a_gpu(capsys):
    assert run(["inspect-params", "-c", "tiny", "-f", "json", "--set", "model.llm.dtype=bfloat16"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in data["components"]}
    assert rows["LLM base"]["dtype"] == "bfloat16"
    assert rows["LoRA adapters"]["dtype"] == "float32" and rows["marker embeddings"]["dtype"] == "float32"
    assert any("float32 on cpu" in n for n in data["notes"])  # and what a CPU run really uses


def test_a_model_with_ctc_heads_is_inspected(capsys):
    assert run(["inspect-params", "-c", "tiny", "-m", "video", "-f", "json", "--set", "model.ctc_weight=0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in data["components"]}
    cfg = load_config("tiny", ["model.ctc_weight=0.5"])
    heads = build_model(cfg, ALL).ctc_heads
    for stream in ("audio", "video"):
        row = rows[f"{stream} CTC head"]
        assert row["total"] == row["trainable"] == sum(p.numel() for p in heads[stream].parameters()) > 0
    active = {c["name"] for c in data["components"] if c["active"]}
    assert "video CTC head" in active and "audio CTC head" not in active


def test_training_table_and_inspect_params_name_the_same_components():
    from avsrctl.training.param_table import ParamUpdateTracker

    model = build_model(load_config("tiny", ["model.ctc_weight=0.5"]), ALL)
    report = param_report(model, "both")
    assert set(ParamUpdateTracker(model).groups) == {r.name for r in report.rows if r.total > 0}


def test_the_default_preset_is_inspected_offline_from_its_published_shapes(capsys, monkeypatch):
    """`inspect-params --config default` failed offline ("cannot load LLM from hub id ..."): the
    table a GPU user wants before downloading 3 GB. Without the weights, the architecture is
    built on the meta device from the published shapes, and the table's title says so."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(["inspect-params", "--config", "default", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "without weights" in data["source"] and "meta-llama/Llama-3.2-1B" in data["source"]
    rows = {c["name"]: c for c in data["components"]}
    # Llama-3.2-1B: 1,235,814,400 parameters (tied embeddings), plus the pad and 4 marker rows avsrctl adds
    assert rows["LLM base"]["total"] == 1_235_814_400 + 5 * 2048
    assert rows["LLM base"]["output_dim"] == 128_256 + 5 and rows["LLM base"]["dtype"] == "bfloat16"
    assert rows["audio encoder"]["output_dim"] == 1024 and rows["video encoder"]["output_dim"] == 768
    assert rows["LoRA adapters"]["trainable"] > 0 and "r=32" in rows["LoRA adapters"]["detail"]
    assert run(["inspect-params", "--config", "default"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps the title
    assert -1 < out.find("without weights") < out.index("component")  # in the title, above the columns
