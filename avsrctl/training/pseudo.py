"""Pseudo-labels for `avsrctl adapt` (adapt.py): the clips of DATA transcribed by the model's audio path.

Every clip is decoded from its clean audio alone (`-m audio`, batched, through `decoding.generate`,
as `decode` does), at the clips' own speed or at `speed` (tempo and pitch change together, as in
speed perturbation), or at the speed at which the audio path is most confident on these clips
(`choose_speed`: a voice unlike the ones the audio path learnt from can read better at another
speed, as vocal tract length normalisation finds for a speaker's formants); a clip is kept when its
transcript is not empty, ended at EOS and its mean token log-probability (`DecodingResult.score`)
is at least `min_score`; with the fused model's sync classifier, each clip's in-sync probability
(`lip_sync`) is recorded and may be required too (`min_lip_sync`, off by default). Transcripts
beside the clips (`.txt`, `.wrd`) are never opened.
The kept clips become RUN/pseudo's train/valid corpus (see adapt.py for the folder), where a word
whose probability (its least likely token's) is below `min_word_prob` is marked unsure (`~word`,
data/manifest.py): the lips read it in context but are not taught it.
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
from avsrctl.config import Config
from avsrctl.data.manifest import Manifest, Utterance, mark_unsure, read_manifest, write_manifest
from avsrctl.errors import DataError, MediaError, UsageError
from avsrctl.wording import plural

if TYPE_CHECKING:  # torch and OpenCV load only when labelling: `avsrctl adapt --help` reads the defaults below
    from avsrctl.decoding import DecodingOptions

# Whisper's own fallback rule treats a decode whose mean token log-probability is below -1.0 as failed
# (`logprob_threshold`); the same scale here (our score also averages over the tokens, EOS included).
DEFAULT_MIN_SCORE = -1.0
# A word the audio path gave less than this probability carries no loss (see the module docstring).
DEFAULT_MIN_WORD_PROB = 0.7
DEFAULT_VALID_FRACTION = 0.05  # of the kept clips, held out for validation (at least one)
# The audio speeds `choose_speed` tries (coarse, then the best one's neighbours) and on how many clips.
SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.2)
SPEED_STEP = 0.05
SPEED_CLIPS = 48
PSEUDO = "pseudo"  # RUN/pseudo: the pseudo-labelled corpus
LABELS, SUMMARY, CLIPS = "labels.jsonl", "summary.json", "clips.tsv"


@dataclass(frozen=True)
class PseudoLabelRule:
    """Which audio decodes become training transcripts."""

    min_score: float = DEFAULT_MIN_SCORE  # mean token log-probability (<= 0), EOS included
    min_lip_sync: float = 0.0  # sync classifier's mean P(in sync); 0: not required
    min_word_prob: float = DEFAULT_MIN_WORD_PROB  # a kept clip's less likely words are marked unsure; 0: none

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_score) or self.min_score > 0:
            raise UsageError(
                f"--min-score is a mean token log-probability, at most 0 (got {self.min_score})",
                hint=f"e.g. --min-score {DEFAULT_MIN_SCORE} (the default)",
            )
        if not 0.0 <= self.min_word_prob <= 1.0:  # also refuses NaN
            raise UsageError(
                f"--min-word-prob is a probability, in [0, 1] (got {self.min_word_prob})",
                hint=f"e.g. --min-word-prob {DEFAULT_MIN_WORD_PROB} (the default); 0 teaches every word",
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

    def unsure(self, word_probs: tuple[float, ...] | None) -> list[bool] | None:
        """Which words of a kept transcript are marked unsure (None: no word probabilities)."""
        return None if word_probs is None else [p < self.min_word_prob for p in word_probs]

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
    word_probs: tuple[float, ...] | None = None  # per word of `text`: its least likely token's probability

    def to_dict(self) -> dict:
        rounded = {
            k: None if v is None else round(v, 4) for k, v in (("score", self.score), ("lip_sync", self.lip_sync))
        }
        probs = None if self.word_probs is None else [round(p, 3) for p in self.word_probs]
        return {"id": self.id, "text": self.text, **rounded, "word_probs": probs, "kept": self.kept, "why": self.why}

    def training_text(self, rule: PseudoLabelRule) -> str:
        """The transcript the lips train on: `text` with the words below rule.min_word_prob marked unsure."""
        unsure = rule.unsure(self.word_probs)
        return self.text if unsure is None else mark_unsure(self.text.split(), unsure)


def word_probs(model: Any, text: str, token_ids: tuple[int, ...], token_logprobs: tuple[float, ...]):
    """Per word of `text`, the probability of its least likely token, from the decode that wrote it;
    None when the decode's tokens are not the model's tokenisation of `text` (nothing to tie them to)."""
    words = text.split()
    if not words or len(token_logprobs) != len(token_ids):
        return None
    ids, word_of = model.token_words(words)
    if tuple(ids) != tuple(token_ids):
        return None
    least = [0.0] * len(words)  # log-probabilities, all <= 0
    for n, lp in zip(word_of, token_logprobs):
        if n >= 0:
            least[n] = min(least[n], lp)
    return tuple(math.exp(lp) for lp in least)


def at_speed(batch: Any, factor: float) -> Any:
    """The batch's audio played `factor` times as fast (0.9: slower and lower), by linear resampling;
    lengths follow the audio and the video is left out (it no longer lines up). factor 1: the batch."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    from avsrctl.data.manifest import SAMPLES_PER_FRAME

    if factor == 1.0:
        return batch
    frames = torch.ceil(batch.lengths.double() / factor).long()  # (B,)
    audio = batch.audio.new_zeros(len(batch), int(frames.max()) * SAMPLES_PER_FRAME)
    for b in range(len(batch)):
        n, m = int(batch.lengths[b]) * SAMPLES_PER_FRAME, int(frames[b]) * SAMPLES_PER_FRAME
        audio[b, :m] = F.interpolate(batch.audio[b, None, None, :n], size=m, mode="linear", align_corners=True)[0, 0]
    return dataclasses.replace(batch, audio=audio, lengths=frames, video=None, video_features=None, audio_features=None)


def choose_speed(
    model: Any, manifest: Manifest, cfg: Config, options: DecodingOptions, batch_size: int | None = None
) -> tuple[float, dict[float, float]]:
    """The audio speed at which the model's audio path is most confident on `manifest`'s clips: the
    highest mean `DecodingResult.score` over SPEED_CLIPS of them (evenly spread), among SPEEDS and then
    the best one's neighbours SPEED_STEP away; a tie goes to the speed nearer 1. No transcript is
    read. Returns (speed, {speed tried: mean score})."""
    import torch

    from avsrctl import decoding
    from avsrctl.data.dataset import AVDataset
    from avsrctl.evaluate import decode_loader

    utts = list(manifest)
    sample = utts[:: max(1, len(utts) // SPEED_CLIPS)][:SPEED_CLIPS]
    loader = decode_loader(AVDataset(Manifest(manifest.root, manifest.tsv, None, sample), "audio"), cfg, batch_size)
    batches = list(loader)
    scores: dict[float, float] = {}

    def mean_score(factor: float) -> float:
        factor = round(factor, 4)
        if factor not in scores:
            got = [
                r.score
                for batch in batches
                if len(batch)
                for r in decoding.generate(model, at_speed(batch.to(model.device), factor), "audio", options)
            ]
            scores[factor] = sum(got) / len(got) if got else -math.inf
        return scores[factor]

    model.eval()
    with torch.no_grad():
        best = max(SPEEDS, key=lambda f: (mean_score(f), -abs(f - 1.0)))
        for f in (best - SPEED_STEP, best + SPEED_STEP):
            mean_score(f)
    speed = max(scores, key=lambda f: (scores[f], -abs(f - 1.0)))
    return speed, dict(sorted(scores.items()))


def reading_prepared(cfg: Config) -> Config:
    """The config that reads clips `prepare` already cut into mouth crops: a mode that always crops
    ('haar', 'landmarks') would cut the crops again, 'auto' passes them through."""
    if cfg.data.roi not in ("haar", "landmarks"):
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"roi": "auto"})})


# --------------------------------------------------------------------------- clips


def log(console: Any, message: str) -> None:
    """Print to `console` (the CLI's stderr chatter), when there is one."""
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
    from avsrctl.data.prepare import prepare_clip
    from avsrctl.data.sources import find_clips

    clips = find_clips(src, exclude=exclude)
    usable, failed = [], {}
    log(console, f"preparing {plural(len(clips), 'clip')} from {src} ({cfg.data.roi} crops, {cfg.data.roi_size} px)")
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
    speed: float = 1.0,
) -> tuple[dict[str, Label], dict[str, str]]:
    """Decode every utterance from its clean audio alone, played at `speed` (`at_speed`), and judge it
    by `rule`; with the fused model's sync classifier also record how well its lips follow its voice
    (at the clip's own speed).
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
                for r, sync in zip(decoding.generate(model, at_speed(batch, speed), "audio", options), syncs):
                    text = " ".join(r.text.split())
                    why = rule.rejects(text, r.score, r.stopped_at_eos, sync)
                    probs = word_probs(model, text, r.token_ids, r.token_logprobs)
                    labels[r.id] = Label(r.id, text, r.score, sync, why is None, why or "kept", probs)
            if on_batch is not None:
                on_batch(len(batch) + len(batch.meta.get("skipped", [])))
    return labels, failed


def _split(kept: list[str], valid_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, valid) ids: valid is a seeded hash choice of `valid_fraction` of them, at least one."""
    from avsrctl.data.splits import split_names

    names = split_names(kept, valid_fraction, 0.0, seed)
    return names["train"], names["valid"]


def _write_corpus(
    pseudo: Path,
    root: Path,
    utts: dict[str, Utterance],
    labels: dict[str, Label],
    rule: PseudoLabelRule,
    train: list[str],
    valid: list[str],
) -> None:
    relative = root == pseudo.resolve()  # prepared clips live in RUN/pseudo: the corpus moves with the run
    for split, ids in (("train", train), ("valid", valid)):
        tsv, wrd = pseudo / f"{split}.tsv", pseudo / f"{split}.wrd"
        if not ids:
            tsv.unlink(missing_ok=True)  # a valid split left by an earlier run would still be read
            wrd.unlink(missing_ok=True)
            continue
        rows = [_with_text(utts[i], labels[i].training_text(rule)) for i in sorted(ids)]
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
    speed: float | None = None,
) -> dict:
    """Prepare DATA's clips, label them with the checkpoint's audio path (at `speed`; None: the one
    `choose_speed` finds) and write RUN/pseudo (see the module docstring). Returns summary.json's content."""
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
    tried: dict[float, float] = {}
    chosen = speed
    if chosen is None:
        chosen, tried = choose_speed(model, manifest, cfg, options, batch_size)
        trials = ", ".join(f"{f:g}: {v:.3f}" for f, v in tried.items())
        log(console, f"audio speed {chosen:g}: the audio path's mean score there was highest ({trials})")
    log(console, f"pseudo-labelling {plural(len(utts), 'clip')} from their audio at speed {chosen:g} with {checkpoint}")
    labels, undecoded = _run_labelling(model, manifest, cfg, rule, options, batch_size, console, chosen)
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
    _write_corpus(pseudo, root, by_id, labels, rule, train, valid)
    words = sum(len(labels[k].text.split()) for k in kept)
    unsure = sum(sum(rule.unsure(labels[k].word_probs) or []) for k in kept)
    summary = {
        "data": str(data.resolve()),
        "checkpoint": str(checkpoint),
        "rule": rule.to_dict(),
        "decode": {"modality": "audio", **asdict(options)},
        # the speed the audio was played at: asked ('auto' or a factor), chosen, and the mean score at each one tried
        "speed": {
            "asked": "auto" if speed is None else speed,
            "chosen": chosen,
            "tried": {f"{f:g}": v for f, v in tried.items()},
        },
        "clips": total,
        "kept": len(kept),
        "failed": len(failed),
        "train": len(train),
        "valid": len(valid),
        "valid_fraction": valid_fraction,
        "words": words,  # in the kept transcripts
        "unsure_words": unsure,  # of them, marked unsure (no loss)
        "crops": crops,
        "labels": str(Path(PSEUDO) / LABELS),
    }
    write_atomic(pseudo / SUMMARY, json.dumps(summary, indent=1) + "\n")
    log(
        console,
        f"kept {len(kept)} of {plural(total, 'clip')} (score >= {rule.min_score:g}, ended at EOS, not empty"
        f"{f', lip_sync >= {rule.min_lip_sync:g}' if rule.min_lip_sync else ''}); {len(failed)} unusable; "
        f"{unsure} of {plural(words, 'word')} marked unsure (probability < {rule.min_word_prob:g}: not taught); "
        f"training on {len(train)}, validating on {len(valid)}; labels in {pseudo / LABELS}",
    )
    return summary


def _run_labelling(model, manifest, cfg, rule, options, batch_size, console, speed):
    if console is None:
        return pseudo_label(
            model, manifest, cfg, rule, options, batch_size=batch_size, device=model.device, speed=speed
        )
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
            speed=speed,
        )


def _fresh_crops(pseudo: Path, crops: dict, console: Any) -> None:
    """Crops left by an earlier run are reused; crops of another kind are cut again."""
    try:
        before = json.loads((pseudo / SUMMARY).read_text(encoding="utf-8")).get("crops")
    except (OSError, ValueError, AttributeError):
        return
    if before is not None and before != crops and (pseudo / "video").is_dir():
        log(console, f"[yellow]{pseudo / 'video'} holds {before['crop']} crops; cutting {crops['crop']} crops[/]")
        shutil.rmtree(pseudo / "video")


def check_data(data: Path, output: Path) -> None:
    """Refuse DATA before anything is written: a folder without clips, an unreadable manifest."""
    if data.is_dir():
        from avsrctl.data.sources import find_clips

        find_clips(data, exclude=output)
    else:
        read_manifest(data, read_text=False, require_text=False)


def reusable_summary(
    pseudo: Path, data: Path, rule: PseudoLabelRule, valid_fraction: float, speed: float | None = None
) -> dict | None:
    """summary.json of the pseudo-labels a resumed run trained on, checked against this call's options."""
    try:
        summary = json.loads((pseudo / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = {
        "data": str(data.resolve()),
        "rule": rule.to_dict(),
        "valid_fraction": valid_fraction,
        "speed": "auto" if speed is None else speed,
    }
    was = {key: summary.get(key) for key in now}
    was["speed"] = (summary.get("speed") or {}).get("asked", 1.0)  # labelled before --speed: the clips' own
    for key, value in now.items():
        if was[key] != value:
            same = f"--speed {was[key]}" if key == "speed" else "the same --data and pseudo-label options"
            raise UsageError(
                f"--resume: this run's pseudo-labels were made with {key} {was[key]!r}, now {value!r}",
                hint=f"resume with {same}, or start a new run with another --output",
            )
    return summary
