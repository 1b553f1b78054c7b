"""The data behind `avsrctl inspect-params`: every component, its widths and its parameters.

`param_report(model, modality)` assigns each parameter of an `AVSRModel` to exactly one
component (LoRA adapters are split out of the LLM, the trainable marker embeddings shown on
their own), counts total and trainable parameters, and marks which components a modality
uses. The counts are plain sums over `named_parameters()` (shared/tied weights once), so they
equal a direct count of the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

# The one component table of the codebase: inspect-params here, the training parameter-update
# table (training/param_table.py) and --init-from's log all name parameters by it.
# (label, parameter-name test, modalities that use it). The first match wins: LoRA before the LLM.
COMPONENTS: tuple[tuple[str, object, tuple[str, ...]], ...] = (
    ("audio encoder", lambda n: n.startswith("audio_encoder."), ("audio", "both")),
    ("audio connector", lambda n: n.startswith("audio_connector."), ("audio", "both")),
    ("video encoder", lambda n: n.startswith("video_encoder."), ("video", "both")),
    ("video connector", lambda n: n.startswith("video_connector."), ("video", "both")),
    ("fusion", lambda n: n.startswith("fusion."), ("both",)),
    ("audio CTC head", lambda n: n.startswith("ctc_heads.audio."), ("audio", "both")),
    ("video CTC head", lambda n: n.startswith("ctc_heads.video."), ("video", "both")),
    ("articulation head", lambda n: n.startswith("articulation_head."), ("video", "both")),
    ("lip-sync head", lambda n: n.startswith("lip_sync."), ("video",)),
    ("LoRA adapters", lambda n: n.startswith("llm.") and "lora_" in n, ("audio", "video", "both")),
    ("LLM base", lambda n: n.startswith("llm."), ("audio", "video", "both")),
    ("marker embeddings", lambda n: n == "marker_embeddings", ("audio", "video", "both")),
)
OTHER = "other"  # a parameter no row names (a module added later): shown, never a crash
_USES = {label: uses for label, _, uses in COMPONENTS} | {OTHER: ("audio", "video", "both")}
LABELS: tuple[str, ...] = (*(label for label, _, _ in COMPONENTS), OTHER)


def component_of(name: str) -> str:
    """The component label of a parameter name (a DDP 'module.' prefix is ignored)."""
    name = name.removeprefix("module.")
    for label, test, _ in COMPONENTS:
        if test(name):
            return label
    return OTHER


@dataclass(frozen=True)
class ComponentRow:
    name: str
    built: bool  # present in this model (a checkpoint may hold only some streams)
    active: bool  # used by the inspected modality
    input_dim: int | None  # width coming in (None: raw audio samples or frames)
    output_dim: int | None  # width going out (the LLM's: vocabulary size)
    detail: str  # rates, compression, rank: what the widths alone do not say
    total: int  # parameters
    trainable: int  # parameters with requires_grad
    dtype: str  # parameter dtype(s), e.g. 'float32' or 'bfloat16+float32'
    status: str  # 'frozen', 'trainable', 'LoRA', 'partly trainable', 'not built'


@dataclass(frozen=True)
class ParamReport:
    modality: str
    rows: tuple[ComponentRow, ...]
    active_total: int
    active_trainable: int
    built_total: int
    built_trainable: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "modality": self.modality,
            "components": [asdict(r) for r in self.rows],
            "total": {"params": self.active_total, "trainable": self.active_trainable},
            "built_total": {"params": self.built_total, "trainable": self.built_trainable},
            "notes": list(self.notes),
        }


def _dims(model: nn.Module, label: str) -> tuple[int | None, int | None, str]:
    """Input and output widths plus a short description of what the component does."""
    if label == "audio encoder":
        return None, model.audio_encoder.output_dim, "16 kHz audio -> 50 Hz frames"
    if label == "video encoder":
        size = getattr(model.video_encoder, "image_size", "?")
        return None, model.video_encoder.output_dim, f"{size}x{size} RGB frames -> 25 Hz features"
    if label == "audio connector":
        c = model.audio_connector
        return (
            c.input_dim,
            c.output_dim,
            f"pool 2 (50 -> 25 Hz), MLP, K={c.compression} ({25 / c.compression:.1f} tokens/s)",
        )
    if label == "video connector":
        c = model.video_connector
        return c.input_dim, c.output_dim, f"MLP at 25 Hz, K={c.compression} ({25 / c.compression:.1f} tokens/s)"
    if label == "fusion":
        f = model.fusion
        how = (
            "dynamic: per-frame gate over both streams"
            if f.weighting == "dynamic"
            else "learned per channel"
            if f.learned
            else "fixed w"
            if f.audio_weight().is_meta  # built without weights (models/known.py): no value to show
            else f"fixed w={float(f.audio_weight()[0]):.2f}"
        )
        return (
            f.input_dim,
            f.output_dim,
            f"w*audio+(1-w)*video, {how}, K={f.compression} ({25 / f.compression:.1f} tokens/s)",
        )
    emb = model.llm.get_input_embeddings()
    if label == "LLM base":
        cfg = model.llm.config
        source = getattr(cfg, "_name_or_path", "") or "random init"
        layers = getattr(cfg, "num_hidden_layers", "?")
        return emb.embedding_dim, emb.num_embeddings, f"{type(model.llm).__name__}, {layers} layers, {source}"
    if label == "LoRA adapters":
        cfg = next(iter(getattr(model.llm, "peft_config", {}).values()), None)
        if cfg is None:
            return None, None, ""
        targets = ",".join(sorted(cfg.target_modules)) if cfg.target_modules else "?"
        return None, None, f"r={cfg.r}, alpha={cfg.lora_alpha:g} on {targets}"
    if label == "marker embeddings":
        return None, emb.embedding_dim, "<audio> </audio> <video> </video>, trainable copy"
    if label.endswith("CTC head"):
        head = model.ctc_heads[label.split()[0]]
        return head.in_features, head.out_features, "25 Hz connector output -> characters + blank (auxiliary CTC)"
    if label == "articulation head":
        head = model.articulation_head
        return head.in_features, head.out_features, "25 Hz video connector output -> rendered mouth parameters"
    if label == "lip-sync head":
        scorer = model.lip_sync.scorer
        return scorer.video.in_features, scorer.video.out_features, "frozen audio encoder + sync scorer (training only)"
    return None, None, ""


def param_report(model: nn.Module, modality: str, notes: tuple[str, ...] = ()) -> ParamReport:
    """Per-component parameter counts of `model`, with the components `modality` uses marked active."""
    counts: dict[str, list] = {label: [0, 0, set()] for label in LABELS}
    for name, p in model.named_parameters():
        label = component_of(name)
        counts[label][0] += p.numel()
        counts[label][1] += p.numel() if p.requires_grad else 0
        counts[label][2].add(str(p.dtype).replace("torch.", ""))
    built = {
        "audio encoder": getattr(model, "audio_encoder", None) is not None,
        "audio connector": getattr(model, "audio_connector", None) is not None,
        "video encoder": getattr(model, "video_encoder", None) is not None,
        "video connector": getattr(model, "video_connector", None) is not None,
        "fusion": getattr(model, "fusion", None) is not None,
        "audio CTC head": counts["audio CTC head"][0] > 0,
        "video CTC head": counts["video CTC head"][0] > 0,
        "articulation head": counts["articulation head"][0] > 0,
        "lip-sync head": counts["lip-sync head"][0] > 0,
        "LoRA adapters": counts["LoRA adapters"][0] > 0,
        "LLM base": True,
        "marker embeddings": counts["marker embeddings"][0] > 0,
        OTHER: counts[OTHER][0] > 0,
    }
    rows = []
    for label in LABELS:
        total, trainable, dtypes = counts[label]
        if label in (OTHER, "lip-sync head") and not built[label]:
            continue  # the catch-all row appears only when something falls into it; the lip-sync head only in training
        if not built[label]:
            status = "not built"
        elif label == "LoRA adapters":
            status = "LoRA"
        elif trainable == 0:
            status = "frozen"
        else:
            status = "trainable" if trainable == total else "partly trainable"
        in_dim, out_dim, detail = _dims(model, label) if built[label] else (None, None, "")
        rows.append(
            ComponentRow(
                name=label,
                built=built[label],
                active=built[label] and modality in _USES[label],
                input_dim=in_dim,
                output_dim=out_dim,
                detail=detail,
                total=total,
                trainable=trainable,
                dtype="+".join(sorted(dtypes)) or "-",
                status=status,
            )
        )
    active = [r for r in rows if r.active]
    return ParamReport(
        modality=modality,
        rows=tuple(rows),
        active_total=sum(r.total for r in active),
        active_trainable=sum(r.trainable for r in active),
        built_total=sum(r.total for r in rows),
        built_trainable=sum(r.trainable for r in rows),
        notes=tuple(notes),
    )
