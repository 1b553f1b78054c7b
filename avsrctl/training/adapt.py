"""`avsrctl adapt`: lips that learn a new face from its own untranscribed video, taught by the
model's audio path.

1. Pseudo-labels (pseudo.py). Every clip is decoded from its clean audio alone (at its own speed, or
   with `--speed auto` where the audio path is most confident on these clips); a clip is kept when
   its transcript is not empty, ended at EOS and scored at least `min_score` (and, when asked, its
   lips were in sync with its voice); in a kept transcript, the words the audio path gave less than
   `min_word_prob` are marked unsure, read but not taught. Transcripts beside the clips are never opened.
2. Fine-tuning, in the three stages `STAGES` of the real-lips recipe (recipes/grid_real.py), each
   through `run_training` as `train` does (progress, parameter table, run folder, lock, resume, best
   and final), from the checkpoint's own config plus `COMMON` (the audio encoder and connector frozen,
   no articulation, video augmentation) plus the stage's recipe:
   a. `lips-ctc`: the lip front-end alone (modality video) with character CTC, from the source;
   b. `lips-video`: the video model through the LLM, from the source and then (a)'s final;
   c. the fused model (`RECIPE`: babble on the audio so the lips must carry the words, the sync
      classifier), from the source and then (b)'s final (later wins on shared weights), into RUN
      itself. Only the fusion trains: `LIPS_PATH` (lip front-end, video connector, LoRA, markers)
      stays as (b) left it (`train.freeze`), so the adapted model reads the lips alone exactly as
      (b) does. `--resume` skips a lips stage whose `final` exists.
3. Provenance. Every checkpoint's meta.json holds `adapted`: the source checkpoint, how many clips
   were kept of how many, the rule that kept them and the stages with their epochs.

```
RUN/
  pseudo/   clips.tsv (every usable clip), train.tsv/.wrd + valid.tsv/.wrd (the kept clips),
            labels.jsonl (id, text, score, lip_sync, kept, why per clip), summary.json,
            video/ audio/ (mouth crops and 16 kHz wavs when DATA is a folder of clips)
  lips-ctc/ lips-video/   the two lip stages' run folders (as `avsrctl train` writes them)
  config.yaml metrics.jsonl epoch-NNNN/ best/ final/   (the fused stage, as `avsrctl train` writes them)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsrctl.config import Config, apply_overrides, config_from_dict
from avsrctl.errors import UsageError
from avsrctl.training.pseudo import (  # no torch at import
    DEFAULT_VALID_FRACTION,
    PSEUDO,
    PseudoLabelRule,
    check_data,
    log,
    make_pseudo_corpus,
    reading_prepared,
    reusable_summary,
)
from avsrctl.wording import plural

if TYPE_CHECKING:  # torch and OpenCV load only when adapting: `avsrctl adapt --help` reads the defaults below
    from avsrctl.training.trainer import TrainResult

DEFAULT_CTC_EPOCHS = 8  # stage lips-ctc
DEFAULT_VIDEO_EPOCHS = 3  # stage lips-video
DEFAULT_EPOCHS = 2  # the fused stage

# What every stage changes in the checkpoint's own config (a `--set` wins over these).
COMMON: dict[str, Any] = {
    "model.audio_encoder.frozen": True,  # the audio path is the teacher: it never trains
    "model.audio_connector.frozen": True,
    "model.losses.articulation": 0.0,  # rendered mouth parameters exist only for demo-data corpora
    "model.losses.lip_sync": 0.0,  # a video model's loss; a fused model has losses.sync
    "data.video_augment": True,  # one face, one camera: keeps the lips from learning the face, not its movements
    "train.max_steps": None,  # the epochs decide (the source run's step limit is not this run's)
    "train.cache_features": None,  # the source run's cache folder may not exist here
}
# The lip stages read no audio: no noise on it, and no corrupted lips with no voice to fall back on.
_LIPS: dict[str, Any] = {
    **COMMON,
    "model.modality": "video",
    "model.losses.ctc": 0.5,
    "data.noise_prob": 0.0,
    "data.video_corruption": 0.0,
}
LIPS_CTC: dict[str, Any] = {**_LIPS, "train.objective": "ctc", "train.lr": 2e-3, "train.warmup_steps": 30}
LIPS_VIDEO: dict[str, Any] = {**_LIPS, "train.objective": "llm", "train.lr": 1e-3}
# Everything the lips alone read through: the fused stage keeps it as the lip stages left it.
LIPS_PATH: list[str] = ["video encoder", "video connector", "LoRA adapters", "marker embeddings"]
# The fused stage: the fusion alone learns when to trust these lips.
RECIPE: dict[str, Any] = {
    **COMMON,
    "model.modality": "both",
    "train.freeze": LIPS_PATH,
    "model.losses.sync": 1.0,  # the sync classifier learns this face's lips against its voice
    "model.losses.ctc": 0.0,  # nothing a CTC head could teach reaches the frozen lips
    "data.noise_kind": "babble",  # drowned audio: the lips must carry the words
    "data.noise_prob": 0.6,
    "data.noise_snr_db": -2.0,
    "data.noise_snr_spread_db": 8.0,
    "train.lr": 5e-4,
    "train.objective": "llm",
}


@dataclass(frozen=True)
class Stage:
    """One training run of the adaptation, as recipes/grid_real.py's stages."""

    name: str
    folder: str  # under RUN ('' : RUN itself)
    modality: str
    recipe: dict[str, Any]
    init: tuple[str, ...]  # earlier stages whose `final` it starts from, after the source checkpoint
    option: str  # the CLI option that sets its epochs


STAGES: tuple[Stage, ...] = (
    Stage("lips-ctc", "lips-ctc", "video", LIPS_CTC, (), "--ctc-epochs"),
    Stage("lips-video", "lips-video", "video", LIPS_VIDEO, ("lips-ctc",), "--video-epochs"),
    Stage("fused", "", "both", RECIPE, ("lips-video",), "--epochs"),
)
FUSED = STAGES[-1]


def stage_folder(output: Path, stage: Stage) -> Path:
    return output / stage.folder if stage.folder else output


@dataclass(frozen=True)
class AdaptResult:
    pseudo: Path  # RUN/pseudo
    summary: dict  # summary.json: clips, kept, train, valid, rule, source
    train: TrainResult


# --------------------------------------------------------------------------- config


def fused_checkpoint(checkpoint: str | Path, rule: PseudoLabelRule | None = None) -> Path:
    """The checkpoint folder, refused unless the model has an audio path, lips and their fusion (and
    the sync classifier when `rule` asks for lip_sync)."""
    from avsrctl.checkpoint import checkpoint_folder, read_checkpoint_config, read_meta

    path = checkpoint_folder(checkpoint)
    meta = read_meta(path)
    cfg = read_checkpoint_config(path)
    modalities = meta.get("modalities") or [cfg.model.modality]
    if "both" not in modalities:
        raise UsageError(
            f"{checkpoint}: adapt needs a model with an audio path and lips (a fused 'both' model); "
            f"this one serves {', '.join(modalities)}",
            hint="adapt a checkpoint trained with --modality both (e.g. grid-small)",
        )
    if rule is not None and rule.min_lip_sync > 0 and cfg.model.losses.sync <= 0:
        raise UsageError(
            f"--min-lip-sync needs a fused model with the sync classifier; {checkpoint} has none",
            hint="leave --min-lip-sync at 0 (adapt trains a sync classifier for this face itself)",
        )
    return path


def adapt_config(
    checkpoint: Path,
    output: Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    overrides: list[str] | None = None,
    seed: int | None = None,
    stage: Stage = FUSED,
) -> Config:
    """One stage's config: the checkpoint's own config < the stage's recipe < `overrides` (--set,
    every stage) < the run's own settings (data, output, epochs, init from the checkpoint and the
    stages before, seed). The audio path stays frozen whatever is set."""
    from avsrctl.checkpoint import CONFIG, read_checkpoint_config

    if epochs < 1:
        raise UsageError(f"{stage.option} must be at least 1 (got {epochs})")
    data = read_checkpoint_config(checkpoint).model_dump(mode="json")
    apply_overrides(data, stage.recipe)
    if overrides:
        apply_overrides(data, list(overrides))
    by_name = {s.name: s for s in STAGES}
    init = [str(checkpoint), *(str(stage_folder(output, by_name[n]) / "final") for n in stage.init)]
    own = {
        "data.root": str(output / PSEUDO),
        "data.train_split": "train",
        "data.valid_split": "valid",
        "train.output": str(stage_folder(output, stage)),
        "train.max_epochs": epochs,
        "train.init_from": init,
        **({"train.seed": seed} if seed is not None else {}),
    }
    apply_overrides(data, own)
    cfg = config_from_dict(data, origin=f"{checkpoint / CONFIG} + adapt ({stage.name})")
    if cfg.model.modality != stage.modality:
        raise UsageError(
            f"adapt's {stage.name} stage trains model.modality '{stage.modality}' (got '{cfg.model.modality}')",
            hint="leave model.modality out of --set: adapt's stages choose it",
        )
    if not (cfg.model.audio_encoder.frozen and cfg.model.audio_connector.frozen):
        raise UsageError(
            "adapt never trains the audio path: model.audio_encoder.frozen and model.audio_connector.frozen stay true",
            hint="the audio path is the teacher; to train it, use `avsrctl train` on transcribed data",
        )
    return cfg


# --------------------------------------------------------------------------- the command


def _refuse_started_stages(output: Path) -> None:
    """Without --resume, a lip stage's folder that already holds checkpoints is refused as `train`
    refuses RUN (before anything is written)."""
    from avsrctl.checkpoint import list_checkpoints

    for stage in STAGES[:-1]:
        existing = list_checkpoints(stage_folder(output, stage))
        if existing:
            raise UsageError(
                f"{stage_folder(output, stage)} already holds checkpoints "
                f"({', '.join(p.name for p in existing[-3:])}); refusing to train over them",
                hint="continue that run with --resume auto, or start a new one with another --output",
            )


def _stage_resume(resume: str | None, folder: Path) -> str | None:
    """A stage's --resume: a checkpoint folder goes to the stage that wrote it; the others resume 'auto'."""
    if resume is None or resume == "auto":
        return resume
    return resume if Path(resume).expanduser().absolute().parent == folder.absolute() else "auto"


def _finished(folder: Path) -> bool:
    from avsrctl.checkpoint import is_complete

    return is_complete(folder / "final")


def run_adaptation(
    checkpoint: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    rule: PseudoLabelRule | None = None,
    ctc_epochs: int = DEFAULT_CTC_EPOCHS,
    video_epochs: int = DEFAULT_VIDEO_EPOCHS,
    epochs: int = DEFAULT_EPOCHS,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    overrides: list[str] | None = None,
    seed: int | None = None,
    beam_size: int | None = None,
    batch_size: int | None = None,
    resume: str | None = None,
    device: str | None = None,
    console: Any = None,
    speed: float | None = None,  # None: --speed auto
) -> AdaptResult:
    """What `avsrctl adapt` does: pseudo-label DATA with the checkpoint's audio path, then train the
    three STAGES on the kept clips (RUN/lips-ctc, RUN/lips-video, then the fused model into RUN:
    RUN/final is an ordinary checkpoint)."""
    from avsrctl.checkpoint import list_checkpoints, read_meta
    from avsrctl.training.run_folder import RunLock, check_output

    data, output = Path(data).expanduser().absolute(), Path(output).expanduser().absolute()
    rule = rule if rule is not None else PseudoLabelRule()
    if not 0.0 <= valid_fraction < 1.0:
        raise UsageError(f"--valid-fraction must be in [0, 1) (got {valid_fraction})")
    if not data.exists():
        raise UsageError(
            f"data not found: {data}",
            hint="pass a folder of clips (.mp4, .mpg, ...) or a .tsv manifest with audio and video",
        )
    if not data.is_dir() and data.suffix != ".tsv":
        raise UsageError(f"--data {data}: expected a folder of clips or a .tsv manifest")
    source = fused_checkpoint(checkpoint, rule)
    stage_epochs = dict(zip((s.name for s in STAGES), (ctc_epochs, video_epochs, epochs)))
    configs = {
        s.name: adapt_config(source, output, epochs=stage_epochs[s.name], overrides=overrides, seed=seed, stage=s)
        for s in STAGES
    }
    cfg = configs[FUSED.name]
    check_data(data, output)  # before anything is written: a folder without clips, an empty manifest
    lock = RunLock(output).acquire()  # one run per folder, from the first file written to the last lip stage
    try:
        resume_path = check_output(output, resume)  # refuses a folder of checkpoints unless resuming
        if resume is None:
            _refuse_started_stages(output)
        started = resume is not None and (
            resume_path is not None or any(list_checkpoints(stage_folder(output, s)) for s in STAGES[:-1])
        )
        summary = reusable_summary(output / PSEUDO, data, rule, valid_fraction, speed) if started else None
        if summary is not None:
            log(console, f"--resume: training on the pseudo-labels already in {output / PSEUDO}")
        else:
            summary = make_pseudo_corpus(
                source,
                data,
                output,
                cfg,
                rule,
                valid_fraction=valid_fraction,
                beam_size=beam_size,
                batch_size=batch_size,
                device=device,
                console=console,
                speed=speed,
            )
        meta = {
            "adapted": {
                "from": str(checkpoint),
                "from_path": str(source.resolve()),
                "from_step": read_meta(source).get("step"),
                "data": summary["data"],
                "clips": summary["clips"],
                "kept": summary["kept"],
                "train": summary["train"],
                "valid": summary["valid"],
                "rule": summary["rule"],
                "words": summary.get("words"),
                "unsure_words": summary.get("unsure_words"),
                "decode": summary["decode"],
                "speed": summary.get("speed"),
                "labels": summary["labels"],
                "stages": [
                    {
                        "name": s.name,
                        "folder": s.folder or ".",
                        "modality": s.modality,
                        "objective": configs[s.name].train.objective,
                        "epochs": stage_epochs[s.name],
                    }
                    for s in STAGES
                ],
            }
        }
        for stage in STAGES[:-1]:  # the lip stages write their own folders: RUN's lock is still held
            folder = stage_folder(output, stage)
            stage_resume = _stage_resume(resume, folder)
            if resume is not None and _finished(folder) and stage_resume == "auto":
                log(console, f"--resume: stage {stage.name} already finished ({folder / 'final'})")
                continue
            log(console, f"stage {stage.name}: {stage.modality}, {plural(stage_epochs[stage.name], 'epoch')}")
            _train(configs[stage.name], stage, data, stage_resume, console, device, meta)
    finally:
        lock.release()
    log(console, f"stage {FUSED.name}: {FUSED.modality}, {plural(epochs, 'epoch')}")
    result = _train(cfg, FUSED, data, _stage_resume(resume, output), console, device, meta)  # takes RUN's lock
    return AdaptResult(output / PSEUDO, summary, result)


def _train(
    cfg: Config, stage: Stage, data: Path, resume: str | None, console: Any, device: str | None, meta: dict
) -> TrainResult:
    from avsrctl.training.run import run_training
    from avsrctl.training.signals import TrainingInterrupted

    train_cfg = reading_prepared(cfg) if data.is_dir() else cfg  # the prepared crops are not cut again
    try:
        return run_training(
            train_cfg, modality=stage.modality, resume=resume, console=console, device=device, meta=meta
        )
    except TrainingInterrupted as e:  # its hint names the command to continue with: this one
        if e.hint:
            e.hint = e.hint.replace("avsrctl train", "avsrctl adapt")
        raise
