"""`avsrctl eval` as a library call: which runs to score, how they are paired, where each writes.

An `EvalRequest` names the hypotheses' source: hypothesis files (`hyp`), a checkpoint decoded per
modality (`checkpoint`; modality 'all': each it serves) or, with neither, the faster-whisper
baseline. `run_eval` reads the manifest, refuses output files that are among its inputs, makes the
runs (`evaluate.baseline_run` / `evaluate.checkpoint_runs`), scores each under every normaliser
and sets paired runs side by side; the `EvalOutcome` it returns writes the results on `write()`.

Run pairing: a checkpoint's 'both' against each single stream decoded beside it; of several
hypothesis files, each against the first. Folder layout under `output_dir`: one run writes into it
directly; several write one subfolder per modality, or one numbered per hypothesis file (two
systems' files are often both named hyp.txt).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from avsrctl.config import MODALITIES
from avsrctl.data.manifest import Manifest
from avsrctl.evaluate import Run
from avsrctl.metrics import ErrorReport

Status = Callable[[str], AbstractContextManager]  # status("loading ...") around a slow step without a bar
ProgressBar = Callable[[], AbstractContextManager]  # a fresh rich-like Progress (add_task, advance) per stage


@dataclass(frozen=True)
class EvalRequest:
    """What `avsrctl eval` scores, against the references of `tsv` (its .wrd, or `wrd`)."""

    tsv: Path
    wrd: Path | None = None
    hyp: tuple[Path, ...] = ()  # hypothesis files, one line per manifest row; scored as they are
    checkpoint: Path | None = None  # decoded per modality; without hyp or checkpoint: the baseline
    modality: str | None = None  # with checkpoint: audio, video, both, all (each it serves), None (its own)
    normalizers: tuple[str, ...] = ("basic",)  # one report each; the first is primary
    output_dir: Path | None = None  # where wer.json, hyp.wrd and results.jsonl go (None: nowhere)
    baseline_model: str | None = None  # faster-whisper model of the baseline (None: the offline tiny.en)
    beam_size: int | None = None  # None: the checkpoint's decode.beam_size; 5 for the baseline
    device: str | None = None
    batch_size: int | None = None  # with checkpoint: utterances generated together (None: its config's)
    min_lip_sync: float | None = None  # with checkpoint: in-sync threshold instead of its config's
    cpu_threads: int = 0  # the baseline's CTranslate2 threads (0: all cores)

    @property
    def source(self) -> str:
        """'hyp', 'checkpoint' or 'baseline': where the hypotheses come from."""
        return "hyp" if self.hyp else "checkpoint" if self.checkpoint is not None else "baseline"


def run_label(run: Run) -> str:
    """How a run is named in lines and tables: its modality, else its hypothesis file, else its system."""
    return run.modality or run.settings.get("hyp") or run.system


def run_folder(output_dir: Path, k: int, n_runs: int, modality: str | None, hyp: str | None) -> Path:
    """Where run `k` of `n_runs` writes: the folder itself for one run, else a subfolder per modality, or
    numbered per hypothesis file (two systems' files are often both named hyp.txt)."""
    if n_runs == 1:
        return output_dir
    if modality is not None:
        return output_dir / modality
    return output_dir / f"{k}-{Path(hyp).stem}"


def possible_folders(request: EvalRequest) -> list[Path]:
    """Every folder `run_folder` can give before the runs exist (with modality 'all', each modality's)."""
    out = request.output_dir
    if out is None:
        return []
    if request.hyp:
        return [run_folder(out, k, len(request.hyp), None, str(h)) for k, h in enumerate(request.hyp, 1)]
    if request.modality == "all":
        return [out] + [run_folder(out, 1, 2, m, None) for m in MODALITIES]
    return [out]


def paired_runs(runs: list[Run], reports_per_run: list[list[ErrorReport]]) -> list[tuple[int, int, float, float]]:
    """(i, j, fewer errors, as many): run i against run j on the same utterances, as shares of paired
    bootstrap resamples (`metrics.paired_comparison`). A checkpoint's 'both' is set against each single
    stream decoded beside it; of several hypothesis files, each against the first."""
    from avsrctl.metrics import paired_comparison

    errors = [[u.errors for u in reports[0].utterances] for reports in reports_per_run]
    modalities = [run.modality for run in runs]
    if "both" in modalities:
        i = modalities.index("both")
        pairs = [(i, modalities.index(m)) for m in ("audio", "video") if m in modalities]
    elif len(runs) > 1 and all(m is None for m in modalities):
        pairs = [(i, 0) for i in range(1, len(runs))]
    else:
        pairs = []
    return [(i, j, *paired_comparison(errors[i], errors[j])) for i, j in pairs]


@dataclass
class EvalOutcome:
    """The scored runs of one `EvalRequest`: `reports[k]` (one per normaliser, the first primary) and
    `summaries[k]` (wer.json's content) of `runs[k]`, and the paired comparisons between runs."""

    request: EvalRequest
    manifest: Manifest
    runs: list[Run]
    reports: list[list[ErrorReport]]
    summaries: list[dict]
    pairs: list[tuple[int, int, float, float]] = field(default_factory=list)

    def write(self) -> list[dict[str, Path]]:
        """Write each run's wer.json, hyp.wrd and results.jsonl under the request's output_dir (its
        folder by `run_folder`); the paths written, per run ([] without an output_dir)."""
        from avsrctl.lips import run_fields
        from avsrctl.metrics import write_results

        if self.request.output_dir is None:
            return []
        refs = [u.text for u in self.manifest]
        written = []
        for k, (run, reports, summary) in enumerate(zip(self.runs, self.reports, self.summaries), 1):
            folder = run_folder(self.request.output_dir, k, len(self.runs), run.modality, run.settings.get("hyp"))
            rows = run_fields(run)[1]
            written.append(write_results(folder, reports[0], refs, run.hypotheses, summary=summary, extra=rows))
        return written


def run_eval(
    request: EvalRequest,
    *,
    status: Status | None = None,
    progress: ProgressBar | None = None,
    note: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Make the request's runs and score them (nothing is written until `EvalOutcome.write`).

    `status(message)` is entered while the checkpoint loads, `progress()` while runs decode, and
    `note(message)` says which baseline is scored before it starts; each optional (silent without)."""
    from avsrctl.data.manifest import read_manifest
    from avsrctl.evaluate import score_run
    from avsrctl.paths import refuse_overwrite

    status = status or (lambda message: nullcontext())
    progress = progress or (lambda: nullcontext())
    manifest = read_manifest(request.tsv, request.wrd, check_files=not request.hyp)
    if request.output_dir is not None:  # no result file may be one of the files read
        from avsrctl.metrics import result_paths

        media = [p for u in manifest for p in (u.video, u.audio)] if not request.hyp else []
        outputs = [p for folder in possible_folders(request) for p in result_paths(folder).values()]
        refuse_overwrite(outputs, [manifest.tsv, manifest.wrd, *request.hyp, *media], "--output-dir")
    if request.source == "hyp":
        from avsrctl.metrics import read_hypotheses

        runs = [Run(f"hypotheses from {h}", read_hypotheses(h), settings={"hyp": str(h)}) for h in request.hyp]
    elif request.source == "checkpoint":
        runs = _checkpoint_runs(request, manifest, status, progress)
    else:
        runs = [_baseline_run(request, manifest, progress, note)]

    scored = [score_run(run, manifest, list(request.normalizers), run.settings.get("hyp", run.system)) for run in runs]
    reports = [r for r, _ in scored]
    summaries = [s for _, s in scored]
    pairs = paired_runs(runs, reports)
    for i, j, better, tied in pairs:
        summaries[i].setdefault("paired", {})[run_label(runs[j])] = {
            "fewer_errors": round(better, 4),
            "as_many": round(tied, 4),
        }
    return EvalOutcome(request, manifest, runs, reports, summaries, pairs)


def _baseline_run(request: EvalRequest, manifest: Manifest, progress: ProgressBar, note) -> Run:
    from avsrctl.baseline import describe_model
    from avsrctl.evaluate import baseline_run

    if note is not None:
        note(
            "no --hyp or --checkpoint: scoring the baseline, "
            f"faster-whisper {describe_model(request.baseline_model)} (audio only)"
        )
    with progress() as bar:
        return baseline_run(
            manifest,
            request.baseline_model,
            request.beam_size or 5,
            request.device,
            progress=bar,
            cpu_threads=request.cpu_threads,
        )


def _checkpoint_runs(request: EvalRequest, manifest: Manifest, status: Status, progress: ProgressBar) -> list[Run]:
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.decoding import DecodingOptions, check_options_fit
    from avsrctl.evaluate import checkpoint_runs

    with status(f"loading {request.checkpoint}"):
        model, cfg, meta = load_checkpoint(request.checkpoint, device=request.device or "auto")
    check_options_fit(model, DecodingOptions(min_lip_sync=request.min_lip_sync))  # before any progress bar
    with progress() as bar:
        return checkpoint_runs(
            model,
            cfg,
            meta,
            request.checkpoint,
            manifest,
            request.modality,
            request.beam_size,
            progress=bar,
            batch_size=request.batch_size,
            min_lip_sync=request.min_lip_sync,
        )
