"""`avsrctl adapt`: lips that learn a new face from its own untranscribed video, taught by the
model's audio path.

1. Pseudo-labels. Every clip is decoded from its clean audio alone (`-m audio`, batched, through
   `decoding.generate`, as `decode` does); a clip is kept when its transcript is not empty, ended at
   EOS and its mean token log-probability (`DecodingResult.score`) is at least `min_score`; with the
   fused model's sync classifier, each clip's in-sync probability (`lip_sync`) is recorded and may be
   required too (`min_lip_sync`, off by default: lips the model never saw may all score low, and
   learning them is the point). Transcripts beside the clips (`.txt`, `.wrd`) are never opened.
2. Fine-tuning, in the three stages `STAGES` of the real-lips recipe (recipes/grid_real.py), each
   through `run_training` as `train` does (progress, parameter table, run folder, lock, resume, best
   and final), from the checkpoint's own config plus `COMMON` (the audio encoder and connector frozen,
   no articulation, video augmentation) plus the stage's recipe:
   a. `lips-ctc`: the lip front-end alone (modality video) with character CTC, from the source;
   b. `lips-video`: the video model through the LLM, from the source and then (a)'s final;
   c. the fused model (`RECIPE`: babble on the audio so the lips must carry the words, the sync
      classifier and CTC on the lips), from the source and then (b)'s final (later wins on shared
      weights), into RUN itself. `--resume` skips a lips stage whose `final` exists.
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

import gc
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsrctl.atomic import write_atomic
from avsrctl.config import Config, apply_overrides, config_from_dict
from avsrctl.data.manifest import Manifest, Utterance, read_manifest, write_manifest
from avsrctl.errors import DataError, MediaError, UsageError
from avsrctl.wording import plural

if TYPE_CHECKING:  # torch and OpenCV load only when adapting: `avsrctl adapt --help` reads the defaults below
    from avsrctl.decoding import DecodingOptions
    from avsrctl.training.trainer import TrainResult

# Whisper's own fallback rule treats a decode whose mean token log-probability is below -1.0 as failed
# (`logprob_threshold`); the same scale here (our score also averages over the tokens, EOS included).
DEFAULT_MIN_SCORE = -1.0
DEFAULT_CTC_EPOCHS = 8  # stage lips-ctc
DEFAULT_VIDEO_EPOCHS = 3  # stage lips-video
DEFAULT_EPOCHS = 2  # the fused stage
DEFAULT_VALID_FRACTION = 0.05  # of the kept clips, held out for validation (at least one)
PSEUDO = "pseudo"  # RUN/pseudo: the pseudo-labelled corpus
LABELS, SUMMARY, CLIPS = "labels.jsonl", "summary.json", "clips.tsv"

# What every stage changes in the checkpoint's own config (a `--set` wins over these).
COMMON: dict[str, Any] = {
    "model.audio_encoder.frozen": True,  # the audio path is the teacher: it never trains
    "model.audio_connector.frozen": True,
    "model.articulation_weight": 0.0,  # rendered mouth parameters exist only for demo-data corpora
    "model.lip_sync_weight": 0.0,  # a video model's loss; a fused model has fusion.sync_weight
    "data.video_augment": True,  # one face, one camera: keeps the lips from learning the face, not its movements
    "train.max_steps": None,  # the epochs decide (the source run's step limit is not this run's)
    "train.cache_features": None,  # the source run's cache folder may not exist here
}
# The lip stages read no audio: no noise on it, and no corrupted lips with no voice to fall back on.
_LIPS: dict[str, Any] = {
    **COMMON,
    "model.modality": "video",
    "model.ctc_weight": 0.5,
    "data.noise_prob": 0.0,
    "data.video_corruption": 0.0,
}
LIPS_CTC: dict[str, Any] = {**_LIPS, "train.objective": "ctc", "train.lr": 2e-3, "train.warmup_steps": 30}
LIPS_VIDEO: dict[str, Any] = {**_LIPS, "train.objective": "llm", "train.lr": 1e-3}
# The fused stage.
RECIPE: dict[str, Any] = {
    **COMMON,
    "model.modality": "both",
    "model.fusion.sync_weight": 1.0,  # the sync classifier learns this face's lips against its voice
    "model.ctc_weight": 0.5,  # a direct signal on the lips (and, unused when decoding, on the audio)
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
class PseudoLabelRule:
    """Which audio decodes become training transcripts."""

    min_score: float = DEFAULT_MIN_SCORE  # mean token log-probability (<= 0), EOS included
    min_lip_sync: float = 0.0  # sync classifier's mean P(in sync); 0: not required

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_score) or self.min_score > 0:
            raise UsageError(
                f"--min-score is a mean token log-probability, at most 0 (got {self.min_score})",
                hint=f"e.g. --min-score {DEFAULT_MIN_SCORE} (the default)",
            )
        from avsrctl.decoding import check_min_lip_sync

        check_min_lip_sync(self.min_lip_sync)

    def rejects(self, text: str, score: float, stopped_at_eos: bool, lip_sync: float | None) -> str | None:
        """Why a decode is not kept, or None when it is."""
        if not text:
            return "empty transcript"
        if not stopped_at_eos:
            return "no end of sentence (cut at decode.max_new_tokens)"
        if score < self.min_score:
            return f"score {score:.3f} below --min-score {self.min_score:g}"
        if lip_sync is not None and lip_sync < self.min_lip_sync:
            return f"lip_sync {lip_sync:.3f} below --min-lip-sync {self.min_lip_sync:g}"
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "non_empty": True, "stopped_at_eos": True}


@dataclass(frozen=True)
class Label:
    """One clip's pseudo-label (a line of labels.jsonl)."""

    id: str
    text: str
    score: float | None  # None when the clip could not be decoded
    lip_sync: float | None
    kept: bool
    why: str  # 'kept', or the reason it was not

    def to_dict(self) -> dict:
        rounded = {
            k: None if v is None else round(v, 4) for k, v in (("score", self.score), ("lip_sync", self.lip_sync))
        }
        return {"id": self.id, "text": self.text, **rounded, "kept": self.kept, "why": self.why}


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
    if rule is not None and rule.min_lip_sync > 0 and cfg.model.fusion.sync_weight <= 0:
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


def reading_prepared(cfg: Config) -> Config:
    """The config that reads clips `prepare` already cut into mouth crops: a mode that always crops
    ('haar', 'landmarks') would cut the crops again, 'auto' passes them through."""
    if cfg.data.roi not in ("haar", "landmarks"):
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"roi": "auto"})})


# --------------------------------------------------------------------------- clips


def _log(console: Any, message: str) -> None:
    if console is not None:
        console.print(message, soft_wrap=True)


def _crops(cfg: Config) -> dict:
    from avsrctl.data.roi import crop_method  # OpenCV

    return {"roi": cfg.data.roi, "roi_size": cfg.data.roi_size, "crop": crop_method(cfg.data.roi)}


def clips_from_folder(
    src: Path, pseudo: Path, cfg: Config, exclude: Path, console: Any = None
) -> tuple[list[Utterance], dict[str, str]]:
    """Mouth crops and 16 kHz wavs of every media file under `src`, as `prepare` writes them (reused
    when already there). Returns (usable utterances, clip id -> why it cannot be used)."""
    from avsrctl.data.prepare import find_clips, prepare_clip

    clips = find_clips(src, exclude=exclude)
    usable, failed = [], {}
    _log(console, f"preparing {plural(len(clips), 'clip')} from {src} ({cfg.data.roi} crops, {cfg.data.roi_size} px)")
    for clip in clips:
        try:
            utt, _ = prepare_clip(clip, pseudo, cfg.data.roi, cfg.data.roi_size)
        except (MediaError, DataError) as e:
            failed[clip.name] = " ".join(str(e).split())
            continue
        if utt.video is None or utt.audio is None:
            failed[clip.name] = f"{clip.path}: no {'video' if utt.video is None else 'audio'} stream"
        else:
            usable.append(utt)
    return usable, failed


def clips_from_manifest(tsv: Path) -> tuple[Path, list[Utterance], dict[str, str]]:
    """(root, rows with both streams, id -> why a row cannot be used) of a manifest; its `.wrd` is
    never opened."""
    manifest = read_manifest(tsv, read_text=False, require_text=False)
    usable = [u for u in manifest if u.video is not None and u.audio is not None]
    failed = {
        u.id: f"{tsv}:{u.line}: no {'video' if u.video is None else 'audio'} path"
        for u in manifest
        if u.video is None or u.audio is None
    }
    return manifest.root, usable, failed


# --------------------------------------------------------------------------- pseudo-labels


def pseudo_label(
    model: Any,
    manifest: Manifest,
    cfg: Config,
    rule: PseudoLabelRule,
    options: DecodingOptions,
    *,
    batch_size: int | None = None,
    device: Any = "cpu",
    on_batch: Any = None,
) -> tuple[dict[str, Label], dict[str, str]]:
    """Decode every utterance from its clean audio alone and judge it by `rule`; with the fused
    model's sync classifier also record how well its lips follow its voice.
    Returns ({id: Label}, {id: why its media could not be decoded})."""
    import torch

    from avsrctl import decoding
    from avsrctl.data.dataset import AVDataset
    from avsrctl.evaluate import decode_loader

    # 'both' reads both streams from disk (the lips for lip_sync); the transcript reads the audio alone
    dataset = AVDataset(manifest, "both", roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    loader = decode_loader(dataset, cfg, batch_size)
    judge = decoding.sync_fusion(model)
    labels: dict[str, Label] = {}
    failed: dict[str, str] = {}
    model.eval()
    with torch.no_grad():
        for batch in loader:
            failed.update(batch.meta.get("skip_reasons", {}))
            if len(batch):
                batch = batch.to(device)
                syncs = [None] * len(batch)
                if judge is not None:
                    streams = model.streams(batch, "both")  # (B, T, D) each
                    syncs = judge.mean_sync(streams["audio"], streams["video"], batch.lengths.to(model.device)).tolist()
                for r, sync in zip(decoding.generate(model, batch, "audio", options), syncs):
                    text = " ".join(r.text.split())
                    why = rule.rejects(text, r.score, r.stopped_at_eos, sync)
                    labels[r.id] = Label(r.id, text, r.score, sync, why is None, why or "kept")
            if on_batch is not None:
                on_batch(len(batch) + len(batch.meta.get("skipped", [])))
    return labels, failed


def _split(kept: list[str], valid_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, valid) ids: valid is a seeded hash choice of `valid_fraction` of them, at least one."""
    from avsrctl.data.prepare import split_names

    names = split_names(kept, valid_fraction, 0.0, seed)
    return names["train"], names["valid"]


def _write_corpus(
    pseudo: Path, root: Path, utts: dict[str, Utterance], labels: dict[str, Label], train: list[str], valid: list[str]
) -> None:
    relative = root == pseudo.resolve()  # prepared clips live in RUN/pseudo: the corpus moves with the run
    for split, ids in (("train", train), ("valid", valid)):
        tsv, wrd = pseudo / f"{split}.tsv", pseudo / f"{split}.wrd"
        if not ids:
            tsv.unlink(missing_ok=True)  # a valid split left by an earlier run would still be read
            wrd.unlink(missing_ok=True)
            continue
        rows = [_with_text(utts[i], labels[i].text) for i in sorted(ids)]
        write_manifest(tsv, wrd, root, rows, relative_root=relative)


def _with_text(u: Utterance, text: str) -> Utterance:
    return Utterance(u.id, u.video, u.audio, u.n_video_frames, u.n_audio_samples, text)


def make_pseudo_corpus(
    checkpoint: Path,
    data: Path,
    output: Path,
    cfg: Config,
    rule: PseudoLabelRule,
    *,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    beam_size: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    console: Any = None,
) -> dict:
    """Prepare DATA's clips, label them with the checkpoint's audio path and write RUN/pseudo
    (see the module docstring). Returns summary.json's content."""
    import torch

    from avsrctl import decoding
    from avsrctl.checkpoint import load_checkpoint

    pseudo = output / PSEUDO
    pseudo.mkdir(parents=True, exist_ok=True)
    crops = None
    if data.is_dir():
        crops = _crops(cfg)
        _fresh_crops(pseudo, crops, console)
        utts, failed = clips_from_folder(data, pseudo, cfg, exclude=output, console=console)
        root, cfg = pseudo.resolve(), reading_prepared(cfg)
    else:
        root, utts, failed = clips_from_manifest(data)
    total = len(utts) + len(failed)
    if not utts:
        first = next(iter(failed.values()))
        raise DataError(f"none of the {plural(total, 'clip')} in {data} has both audio and video (first: {first})")
    manifest = Manifest(root, pseudo / CLIPS, None, utts)
    write_manifest(pseudo / CLIPS, None, root, utts, relative_root=root == pseudo.resolve())

    model, _, _ = load_checkpoint(checkpoint, device=device)
    options = decoding.DecodingOptions.from_config(cfg.decode, beam_size=beam_size)  # the checkpoint's, or --set
    _log(console, f"pseudo-labelling {plural(len(utts), 'clip')} from their audio with {checkpoint}")
    labels, undecoded = _run_labelling(model, manifest, cfg, rule, options, batch_size, console)
    del model  # the training builds its own; two models would double the memory
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    failed.update({k: f"media: {v}" for k, v in undecoded.items()})
    every = {**labels, **{k: Label(k, "", None, None, False, why) for k, why in failed.items()}}
    write_atomic(pseudo / LABELS, "".join(json.dumps(every[k].to_dict()) + "\n" for k in sorted(every)))

    kept = sorted(k for k, label in labels.items() if label.kept)
    babble = cfg.data.noise_kind == "babble" and cfg.data.noise_prob > 0
    need = (2 if babble else 1) + (1 if valid_fraction > 0 else 0)
    if len(kept) < need:
        raise DataError(
            f"only {len(kept)} of {plural(total, 'clip')} passed the pseudo-label rule (not empty, ended at EOS, "
            f"score >= {rule.min_score:g}{f', lip_sync >= {rule.min_lip_sync:g}' if rule.min_lip_sync else ''}); "
            f"adapt needs at least {need}",
            hint=f"each clip's score and why are in {pseudo / LABELS}: lower --min-score, or add clips",
        )
    train, valid = _split(kept, valid_fraction, cfg.train.seed)
    by_id = {u.id: u for u in utts}
    _write_corpus(pseudo, root, by_id, labels, train, valid)
    summary = {
        "data": str(data.resolve()),
        "checkpoint": str(checkpoint),
        "rule": rule.to_dict(),
        "decode": {"modality": "audio", **asdict(options)},
        "clips": total,
        "kept": len(kept),
        "failed": len(failed),
        "train": len(train),
        "valid": len(valid),
        "valid_fraction": valid_fraction,
        "crops": crops,
        "labels": str(Path(PSEUDO) / LABELS),
    }
    write_atomic(pseudo / SUMMARY, json.dumps(summary, indent=1) + "\n")
    _log(
        console,
        f"kept {len(kept)} of {plural(total, 'clip')} (score >= {rule.min_score:g}, ended at EOS, not empty"
        f"{f', lip_sync >= {rule.min_lip_sync:g}' if rule.min_lip_sync else ''}); {len(failed)} unusable; "
        f"training on {len(train)}, validating on {len(valid)}; labels in {pseudo / LABELS}",
    )
    return summary


def _run_labelling(model, manifest, cfg, rule, options, batch_size, console):
    if console is None:
        return pseudo_label(model, manifest, cfg, rule, options, batch_size=batch_size, device=model.device)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("pseudo-labels (audio)", total=len(manifest))
        return pseudo_label(
            model,
            manifest,
            cfg,
            rule,
            options,
            batch_size=batch_size,
            device=model.device,
            on_batch=lambda n: progress.advance(task, n),
        )


def _fresh_crops(pseudo: Path, crops: dict, console: Any) -> None:
    """Crops left by an earlier run are reused; crops of another kind are cut again."""
    try:
        before = json.loads((pseudo / SUMMARY).read_text(encoding="utf-8")).get("crops")
    except (OSError, ValueError, AttributeError):
        return
    if before is not None and before != crops and (pseudo / "video").is_dir():
        _log(console, f"[yellow]{pseudo / 'video'} holds {before['crop']} crops; cutting {crops['crop']} crops[/]")
        shutil.rmtree(pseudo / "video")


def _check_data(data: Path, output: Path) -> None:
    if data.is_dir():
        from avsrctl.data.prepare import find_clips

        find_clips(data, exclude=output)
    else:
        read_manifest(data, read_text=False, require_text=False)


def _reusable(pseudo: Path, data: Path, rule: PseudoLabelRule, valid_fraction: float) -> dict | None:
    """summary.json of the pseudo-labels a resumed run trained on, checked against this call's options."""
    try:
        summary = json.loads((pseudo / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = {"data": str(data.resolve()), "rule": rule.to_dict(), "valid_fraction": valid_fraction}
    for key, value in now.items():
        if summary.get(key) != value:
            raise UsageError(
                f"--resume: this run's pseudo-labels were made with {key} {summary.get(key)!r}, now {value!r}",
                hint="resume with the same --data and pseudo-label options, or start a new run with another --output",
            )
    return summary


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
    _check_data(data, output)  # before anything is written: a folder without clips, an empty manifest
    lock = RunLock(output).acquire()  # one run per folder, from the first file written to the last lip stage
    try:
        resume_path = check_output(output, resume)  # refuses a folder of checkpoints unless resuming
        if resume is None:
            _refuse_started_stages(output)
        started = resume is not None and (
            resume_path is not None or any(list_checkpoints(stage_folder(output, s)) for s in STAGES[:-1])
        )
        summary = _reusable(output / PSEUDO, data, rule, valid_fraction) if started else None
        if summary is not None:
            _log(console, f"--resume: training on the pseudo-labels already in {output / PSEUDO}")
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
                "decode": summary["decode"],
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
                _log(console, f"--resume: stage {stage.name} already finished ({folder / 'final'})")
                continue
            _log(console, f"stage {stage.name}: {stage.modality}, {plural(stage_epochs[stage.name], 'epoch')}")
            _train(configs[stage.name], stage, data, stage_resume, console, device, meta)
    finally:
        lock.release()
    _log(console, f"stage {FUSED.name}: {FUSED.modality}, {plural(epochs, 'epoch')}")
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
