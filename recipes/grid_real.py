"""Real-lips recipe: teach the GRID recipe's fused model real mouths from GRID speaker s1's video.

    python recipes/grid_real.py --work runs/grid                      # after recipes/grid.py (make grid-recipe)
    python recipes/grid_real.py --work runs/real --start grid-small   # from the shipped built-in model

Steps (each skipped when its output already exists, so a rerun resumes):
  1. `avsrctl prepare` of ../shared/grid-s1 (900 real recordings of speaker s1, CC BY 4.0) into
     16 kHz wav + 48 px landmark mouth crops, honouring the corpus's own split (`--split-list`:
     750 train, 50 valid, 100 test);
  2. three training stages on the real s1 clips, each starting from the model before it
     (`--init-from`; the first from START, the synthetic recipe's fused model): the lip front-end
     alone with character CTC, then the video model through the LLM, then the fused model with
     babble noise on the audio, corrupted video and the audio-visual sync loss (so its sync
     classifier learns real faces: in-sync pairs against shifted ones and other clips' lips);
     `--mix-synthetic N` (default 375, one rendered clip per two real ones: the built-in model's
     run) adds N clips of the synthetic recipe's training corpus (WORK/corpus, made when absent;
     spread evenly, so every rendered speaker and face) to every stage's training split, so the
     lips keep reading rendered faces and the sync classifier sees more than one face (0: s1 only);
  3. the s1 test clips drowned in babble at 5, 0, -5 and -10 dB (written once, so every system
     hears the same noise), the unseen real speakers (s2, s5, s20: ../shared/media and the
     package samples, never bbaf2n, which is s1 test), s1 test with still video, and the
     synthetic held-out voices when the synthetic recipe made them;
  4. `avsrctl eval` of the audio model (START's audio path), the video model, the fused model
     (and its audio-only and video-only controls) and faster-whisper tiny.en on all of them;
  5. docs/RESULTS.md (targets first), docs/results.json, docs/wer_vs_snr.png (the `plot` extra),
     and the built-in model grid-small when its key figures improve.

Nothing is tuned on a test clip: the settings below were chosen before the test sets were decoded,
and the only set a stage reads besides its training clips is s1's valid split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from grid import (
    AVSRCTL,
    LIP_FRONT_END,
    MEDIA,
    REPO,
    SIZE,
    SPEAKERS,
    evaluate,
    grammar_chance,
    lips,
    log,
    run,
    still_manifest,
)

S1 = Path(os.environ.get("AVSRCTL_GRID_S1", REPO.parent / "shared" / "grid-s1"))
SNRS = (5, 0, -5, -10)  # babble SNRs of the picture (dB), besides clean
MIX_SYNTHETIC = 375  # rendered clips mixed into every real stage (--mix-synthetic): the built-in model's run
SEEN_TEST_CLIP = "bbaf2n"  # s1's clip in ../shared/media and the package samples: s1 test, never unseen


@dataclass(frozen=True)
class Stage:
    """One `avsrctl train` run on the real clips: its name, modality, epochs and settings."""

    name: str
    modality: str
    epochs: int
    settings: list[str] = field(default_factory=list)
    init: tuple[str, ...] = ()  # earlier stages whose `final` it starts from, after START


# Real mouths are not rendered ones: no mouth parameters to regress (articulation off), and each
# stage keeps the appearance augmentation of the synthetic recipe (one speaker, one camera: the
# augmentation is what keeps the lips from learning s1's face instead of s1's movements).
REAL = [*LIP_FRONT_END, "--set", "model.losses.articulation=0", "--set", "train.valid_max_utts=50"]
STAGES = (
    Stage(
        "video-ctc",
        "video",
        20,
        ["--set", "train.objective=ctc", "--set", "model.losses.ctc=0.5", "--set", "train.lr=2e-3"]
        + ["--set", "train.warmup_steps=30", *REAL],
    ),
    Stage("video", "video", 6, ["--set", "train.lr=1e-3", "--set", "model.losses.ctc=0.5", *REAL], init=("video-ctc",)),
    # babble from -10 to +6 dB on 60% of the clips: the lips must carry the words where the voice drowns
    Stage(
        "both",
        "both",
        4,
        ["--set", "train.lr=5e-4", "--set", "train.warmup_steps=10", *REAL]
        + ["--set", "data.noise_kind=babble", "--set", "data.noise_snr_db=-2", "--set", "data.noise_snr_spread_db=8"]
        + ["--set", "data.noise_prob=0.6", "--set", "data.video_corruption=0.3"]
        + ["--set", "model.fusion.modality_dropout=0.2", "--set", "model.losses.sync=1.0"],
        init=("video",),
    ),
)


def prepare_s1(out: Path, timings: dict) -> Path:
    """s1's clips as a corpus with its own split (train/valid/test.tsv); prepare reuses finished clips."""
    if not (out / "test.tsv").is_file():
        lists = [a for split in ("train", "valid", "test") for a in ("--split-list", f"{split}={S1 / f'{split}.txt'}")]
        command = ["prepare", S1 / "video", out, *lists, "--roi", "auto", "--roi-size", SIZE, "--workers", 2]
        _, seconds, rss = run(AVSRCTL + command)
        (out / "recipe_timing.json").write_text(json.dumps({"seconds": seconds, "peak_rss_mib": rss}))
    if (out / "recipe_timing.json").is_file():
        timings["prepare-s1"] = json.loads((out / "recipe_timing.json").read_text())
    return out


def unseen_manifest(out: Path) -> Path:
    """The real GRID clips of speakers outside s1: ../shared/media's and the package samples' (bbaf2n
    is s1 test and never counted here), full frames cropped at load time as a user's clip would be."""
    from avsrctl.data.manifest import Utterance, write_manifest
    from avsrctl.data.media import probe

    clips: dict[str, tuple[Path, str]] = {}
    samples = REPO / "avsrctl" / "samples"
    for listing in (MEDIA / "MANIFEST.tsv", samples / "transcripts.tsv"):
        if not listing.is_file():
            continue
        rows = [line.split("\t") for line in listing.read_text(encoding="utf-8").splitlines()[1:] if line]
        for row in rows:
            path = listing.parent / row[0]
            text = row[-1]  # transcripts.tsv: file, transcript; MANIFEST.tsv: ..., reference_transcript
            if path.stem.startswith("grid_") and SEEN_TEST_CLIP not in path.stem:
                clips.setdefault(path.stem, (path, text))
    utts = []
    for stem, (path, text) in sorted(clips.items()):
        frames = round(probe(path).duration * 25)
        utts.append(Utterance(stem, path, path, frames, frames * 640, text))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "test.tsv", out / "test.wrd", out.resolve(), utts)
    return out / "test.tsv"


def noisy_copies(tsv: Path, out: Path, snrs) -> dict[int, Path]:
    """The manifest with its audio drowned in babble (other utterances of the manifest) at each SNR:
    wavs written once with `decode --snr`'s noise (seed 0), so every system hears the same mixture."""
    from avsrctl.data.manifest import read_manifest, write_manifest
    from avsrctl.data.media import load_audio, save_audio
    from avsrctl.data.noise import ManifestNoiser, NoiseSpec

    manifests = {}
    utts = read_manifest(tsv)
    for snr in snrs:
        folder = out / f"snr_{snr}"
        manifests[snr] = folder / "test.tsv"
        if manifests[snr].is_file():
            continue
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        noiser = ManifestNoiser(utts, NoiseSpec("babble", float(snr), 1.0), seed=0)
        rows = []
        for i, u in enumerate(utts):
            wav = folder / "audio" / f"{u.id}.wav"
            save_audio(wav, noiser(i, load_audio(u.audio)))
            rows.append(replace(u, audio=wav))
        write_manifest(manifests[snr], folder / "test.wrd", folder.resolve(), rows)
    return manifests


def synthetic_heldout(out: Path) -> Path:
    """The synthetic recipe's second held-out set (other seed, other voices), made as recipes/grid.py makes it."""
    from grid import mbrola_available

    if not (out / "test.tsv").is_file():
        voices = ["--mbrola"] if mbrola_available() else []
        command = ["demo-data", out, "--test-only", "--utterances", 150, *SPEAKERS]
        run(AVSRCTL + [*command, "--seed", 1, "--size", SIZE, *voices])
    return out / "test.tsv"


def synthetic_corpus(out: Path, timings: dict) -> Path:
    """The synthetic recipe's training corpus, made as recipes/grid.py makes it by default (same seed,
    size, speakers and faces) when it is not there yet: the rendered faces the real stages may mix in."""
    from grid import FACES, UTTERANCES, mbrola_available, training_corpus

    return training_corpus(out, UTTERANCES, FACES, mbrola_available(), timings)


def mixed_corpus(real: Path, synthetic: Path, n: int, out: Path) -> Path:
    """One corpus: `real`'s training clips and `n` of `synthetic`'s (spread evenly over its list), with
    `real`'s own valid and test splits alone (so every choice a stage makes is still made on real
    clips). Rows point at the clips where they are (absolute paths); an id in both is an error."""
    from avsrctl.data.manifest import read_manifest, write_manifest
    from avsrctl.errors import DataError

    pool = list(read_manifest(synthetic / "train.tsv", synthetic / "train.wrd"))
    if len(pool) < n:
        raise DataError(f"{synthetic / 'train.tsv'}: {len(pool)} training utterances, {n} asked to mix in")
    extra = [pool[i * len(pool) // n] for i in range(n)]  # spread evenly: every speaker and face, in any order
    for split in ("train", "valid", "test"):
        utts = list(read_manifest(real / f"{split}.tsv", real / f"{split}.wrd"))
        if split == "train":
            clash = {u.id for u in utts} & {u.id for u in extra}
            if clash:
                raise DataError(f"{synthetic / 'train.tsv'}: id '{sorted(clash)[0]}' is also in {real / 'train.tsv'}")
            utts = utts + extra
        write_manifest(out / f"{split}.tsv", out / f"{split}.wrd", real.resolve(), utts)
    return out


def train(work: Path, corpus: Path, start: str, stage: Stage, timings: dict, *, mixed: int = 0) -> Path:
    """One stage into WORK/real-NAME (WORK/real-mixN-NAME with N rendered clips mixed in, so a run with
    another mixture never reuses these), skipped when its `final` exists."""
    tag = f"real-mix{mixed}-" if mixed else "real-"
    out = work / f"{tag}{stage.name}"
    if not (out / "final").is_dir():
        init = [
            a for s in (start, *(str(work / f"{tag}{i}" / "final") for i in stage.init)) for a in ("--init-from", s)
        ]
        extra = []
        if stage.modality == "both":  # the audio path keeps START's token compression
            from avsrctl.checkpoint import read_checkpoint_config
            from avsrctl.pretrained import resolve_checkpoint

            k = read_checkpoint_config(resolve_checkpoint(start)).model.audio_connector.compression
            extra = ["--set", f"model.audio_connector.compression={k}"]
        command = AVSRCTL + ["train", "--config", "offline-small", "--data", corpus, "--modality", stage.modality]
        command += ["--output", out, "--max-epochs", stage.epochs, *init, *extra, *stage.settings]
        _, seconds, rss = run(command)
        record = {"seconds": seconds, "peak_rss_mib": rss, "epochs": stage.epochs}
        (out / "recipe_timing.json").write_text(json.dumps(record))
    timings[f"{tag}{stage.name}"] = json.loads((out / "recipe_timing.json").read_text())
    return out / "final"


def adapt(work: Path, corpus: Path, start: str, timings: dict) -> tuple[Path, dict]:
    """`avsrctl adapt` from START (lips that never saw s1) on s1's training clips without their
    transcripts: a manifest of the same crops with no .wrd beside it. Returns the adapted model and
    how its pseudo-labels compare with the withheld transcripts (scored after the fact)."""
    from avsrctl.data.manifest import read_manifest
    from avsrctl.metrics import score

    data, out = work / "adapt-data", work / "adapt"
    if not (data / "train.tsv").is_file():
        data.mkdir(parents=True, exist_ok=True)
        lines = (corpus / "train.tsv").read_text(encoding="utf-8").splitlines()
        root = (corpus / lines[0]).resolve() if not Path(lines[0]).is_absolute() else Path(lines[0])
        (data / "train.tsv").write_text("\n".join([str(root), *lines[1:]]) + "\n", encoding="utf-8")
    if not (out / "final").is_dir():
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _, seconds, rss = run(AVSRCTL + ["adapt", "--checkpoint", start, "--data", data / "train.tsv", "--output", out])
        after = resource.getrusage(
            resource.RUSAGE_CHILDREN
        )  # CPU time: a figure other load on the cores cannot inflate
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        record = {"seconds": seconds, "cpu_seconds": round(cpu, 1), "peak_rss_mib": rss}
        (out / "recipe_timing.json").write_text(json.dumps(record))
    timings["adapt"] = json.loads((out / "recipe_timing.json").read_text())
    labels = [json.loads(line) for line in (out / "pseudo" / "labels.jsonl").read_text().splitlines() if line]
    truth = dict(
        zip(
            [line.split("\t")[0] for line in (corpus / "train.tsv").read_text().splitlines()[1:]],
            (corpus / "train.wrd").read_text(encoding="utf-8").splitlines(),
        )
    )
    kept = [r for r in labels if r.get("kept")]
    report = score([truth[r["id"]] for r in kept], [r["text"] for r in kept]) if kept else None
    summary = json.loads((out / "pseudo" / "summary.json").read_text())
    speed = summary.get("speed") or {}  # absent in runs labelled before --speed: the clips' own
    trained = {  # id -> the transcript the lips trained on, unsure words marked
        u.id: u.text
        for split in ("train", "valid")
        if (out / "pseudo" / f"{split}.tsv").is_file()
        for u in read_manifest(out / "pseudo" / f"{split}.tsv", check_files=False)
    }
    pseudo = {
        "clips": len(labels),
        "kept": len(kept),
        "wer": None if report is None else report.wer,
        "errors": None if report is None else report.substitutions + report.deletions + report.insertions,
        "words": None if report is None else report.ref_words,
        "wrong": None if report is None else sum(u.errors > 0 for u in report.utterances),
        "min_word_prob": summary["rule"].get("min_word_prob", 0.0),
        "speed": speed.get("chosen", 1.0),  # the audio path's, for the pseudo-labels
        "speed_asked": speed.get("asked", 1.0),
        **taught_and_unsure([trained[r["id"]] for r in kept], report.utterances if report else ()),
    }
    return out / "final", pseudo


def taught_and_unsure(trained: list[str], scored) -> dict:
    """How many words of the pseudo-transcripts the lips were taught and how many were marked unsure
    (`~word`, read but not taught), and how many of each were wrong. `scored`: the same transcripts'
    `metrics.score` against the withheld ones (basic normaliser), whose alignment says which of their
    words were substituted or inserted, i.e. wrong."""
    from avsrctl.data.manifest import unsure_words
    from avsrctl.metrics import basic_normalize

    counts = {"taught": 0, "taught_wrong": 0, "unsure": 0, "unsure_wrong": 0}
    for text, utt in zip(trained, scored, strict=True):
        # each word normalised alone: the same words, in order, as the normalised hypothesis scored
        unsure = [u for w, u in unsure_words(text) for _ in basic_normalize(w).split()]
        right = [False] * len(unsure)
        for chunk in utt.alignment:
            if chunk.type == "equal":
                right[chunk.hyp_start_idx : chunk.hyp_end_idx] = [True] * (chunk.hyp_end_idx - chunk.hyp_start_idx)
        for ok, u in zip(right, unsure, strict=True):
            kind = "unsure" if u else "taught"
            counts[kind] += 1
            counts[f"{kind}_wrong"] += not ok
    return counts


ADAPT_SYSTEMS = {  # name -> (modality, test sets): START before adaptation, the adapted model after
    "start-model-video-only": ("video", ["s1", "unseen"]),
    "start": ("both", ["unseen", "unseen-babble-5"]),
    "adapted": ("both", ["s1", "s1-babble-5", "s1-babble-10", "unseen", "unseen-babble-5"]),
    "adapted-model-video-only": ("video", ["s1", "unseen"]),
    "adapted-model-audio-only": ("audio", ["unseen", "unseen-babble-5"]),
}


def adapt_only(args, work: Path, corpus: Path, start: str, timings: dict) -> None:
    """The adaptation stage and the evaluations its targets need (the audio model at -5 dB too)."""
    import real_report as report

    adapted, pseudo = adapt(work, corpus, start, timings)
    tests = {"s1": corpus / "test.tsv", "unseen": unseen_manifest(work / "unseen")}
    tests.update(
        {f"s1-babble{snr}": tsv for snr, tsv in noisy_copies(tests["s1"], work / "s1-babble", (-5, -10)).items()}
    )
    tests["unseen-babble-5"] = noisy_copies(tests["unseen"], work / "unseen-babble", (-5,))[-5]
    systems = {"audio": (start, "audio", ["s1-babble-5"])}
    for name, (modality, names) in ADAPT_SYSTEMS.items():
        systems[name] = (str(adapted) if name.startswith("adapted") else start, modality, names)
    results, lip_use = {}, {}
    for name, (checkpoint, modality, names) in systems.items():
        for test in names:
            folder = work / "eval" / f"{test}-{name}"
            results[f"{test}/{name}"] = evaluate(
                tests[test], folder, "--checkpoint", checkpoint, "--modality", modality
            )
            used = lips(folder) if name == "adapted" else None
            if used and used.get("lip_sync") is not None:
                lip_use[f"{test} (adapted)"] = used
    report.update_adapt(args, results, timings, lip_use, pseudo, start=start)
    log(f"adaptation figures written to {args.results} and {args.results.with_name('results.json')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "grid", help="working folder")
    parser.add_argument(
        "--start",
        default=None,
        help="the fused model the real stages start from (default: WORK/train-both/final of recipes/grid.py)",
    )
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    parser.add_argument("--no-export", action="store_true", help="leave the built-in model grid-small as it is")
    parser.add_argument(
        "--mix-synthetic",
        type=int,
        default=MIX_SYNTHETIC,
        metavar="N",
        help="also train every real stage on N clips of the synthetic recipe's training corpus, spread evenly over it "
        f"(WORK/corpus, made when absent); validation stays on s1's valid split (default {MIX_SYNTHETIC}; "
        "0: real clips only)",
    )
    parser.add_argument("--no-adapt", action="store_true", help="skip the `avsrctl adapt` stage and its evaluations")
    parser.add_argument(
        "--adapt-only",
        action="store_true",
        help="only the `avsrctl adapt` stage and its evaluations; its figures join docs/results.json and its "
        "section of RESULTS.md is replaced (the real-lips figures there stay)",
    )
    args = parser.parse_args()
    if args.adapt_only and args.no_adapt:
        parser.error("--adapt-only and --no-adapt exclude each other")
    if args.mix_synthetic < 0:
        parser.error("--mix-synthetic must be 0 or more")
    work: Path = args.work
    start = args.start or str(work / "train-both" / "final")
    if not (S1 / "train.txt").is_file():
        raise SystemExit(f"[grid-real] no GRID s1 corpus at {S1} (set AVSRCTL_GRID_S1)")
    timings: dict[str, dict] = {}
    t0 = time.perf_counter()
    corpus = prepare_s1(work / "s1", timings)
    if args.adapt_only:
        adapt_only(args, work, corpus, start, timings)
        return
    train_corpus = corpus  # what the stages train on: s1, or s1 with rendered faces mixed in
    if args.mix_synthetic:
        rendered = synthetic_corpus(work / "corpus", timings)
        train_corpus = mixed_corpus(corpus, rendered, args.mix_synthetic, work / f"s1-mixed-{args.mix_synthetic}")
    ckpt = {s.name: train(work, train_corpus, start, s, timings, mixed=args.mix_synthetic) for s in STAGES}

    adapted, pseudo = (None, None) if args.no_adapt else adapt(work, corpus, start, timings)

    tests = {"s1": corpus / "test.tsv"}
    noisy = noisy_copies(corpus / "test.tsv", work / "s1-babble", SNRS)
    tests.update({f"s1-babble{snr}": tsv for snr, tsv in noisy.items()})
    unseen = unseen_manifest(work / "unseen")
    tests["unseen"] = unseen
    tests["unseen-babble-5"] = noisy_copies(unseen, work / "unseen-babble", (-5,))[-5]
    tests["s1-still-video"] = still_manifest(corpus / "test.tsv", work / "s1-still")
    heldout = synthetic_heldout(work / "heldout")  # the synthetic recipe's held-out voices: kept?
    tests["heldout"] = heldout
    tests["heldout-babble-5"] = noisy_copies(heldout, work / "heldout-babble", (-5,))[-5]

    systems = {  # name -> (checkpoint or None for faster-whisper, modality, test sets)
        "audio": (start, "audio", [t for t in tests if not t.endswith("still-video")]),
        "video": (str(ckpt["video"]), "video", ["s1", "unseen", "heldout"]),
        "both": (str(ckpt["both"]), "both", list(tests)),
        "both-model-audio-only": (str(ckpt["both"]), "audio", [t for t in tests if not t.endswith("still-video")]),
        "both-model-video-only": (str(ckpt["both"]), "video", ["s1", "unseen", "heldout"]),
        "baseline": (None, "audio", ["s1", *(f"s1-babble{snr}" for snr in SNRS), "unseen"]),
    }
    for name, (modality, names) in ADAPT_SYSTEMS.items():  # avsrctl adapt: START's lips before, adapted after
        if name.startswith("adapted") and adapted is None:
            continue
        systems[name] = (str(adapted) if name.startswith("adapted") else start, modality, names)
    results: dict[str, dict] = {}
    lip_use: dict[str, dict] = {}
    for name, (checkpoint, modality, names) in systems.items():
        for test in names:
            if test not in tests:
                continue
            folder = work / "eval" / f"{test}-{name}"
            extra = [] if checkpoint is None else ["--checkpoint", checkpoint, "--modality", modality]
            results[f"{test}/{name}"] = evaluate(tests[test], folder, *extra)
            if name in ("both", "both-model-video-only", "adapted"):
                used = lips(folder)
                if used and used.get("lip_sync") is not None:
                    label = {"both": "", "both-model-video-only": " (lips alone)", "adapted": " (adapted)"}[name]
                    lip_use[f"{test}{label}"] = used
    import real_report as report

    chance = grammar_chance(corpus / "test.tsv", corpus / "train.wrd")
    report.write_all(args, results, timings, lip_use, chance, start=start, pseudo=pseudo)
    if not args.no_export and (REPO / "avsrctl" / "builtin").is_dir():
        sys.path.insert(0, str(REPO / "scripts"))  # release tooling, outside the package
        from export_builtin import export_builtin

        from avsrctl.errors import AvsrError

        recipe = shlex.join(["python", "recipes/grid_real.py", *sys.argv[1:]])
        try:
            folder = export_builtin(ckpt["both"], "grid-small", args.results.with_name("results.json"), recipe=recipe)
            log(f"wrote the built-in model grid-small to {folder}")
        except AvsrError as e:
            log(f"kept the installed built-in model: {e}")
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min on {os.cpu_count()} cores ({platform.machine()})")


if __name__ == "__main__":
    main()
