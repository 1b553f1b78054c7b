"""The fault half of the reliability matrix (docs/RELIABILITY.md): processes killed or
interrupted, a full disk, unwritable output folders, an interrupted decode.

The kill test runs real processes: SIGKILL at several moments, then SIGINT.

One run folder goes through a sequence of interruptions of `python -m avsrctl train
--save-steps 1`: killed right after its first checkpoint appears, after two more, while a
checkpoint is being written (a `.tmp-*` folder exists), at a seeded random moment, and
finally stopped with SIGINT; each time `--resume auto` continues it, and a last run finishes.
After every interruption:

- every checkpoint folder visible under its final name is complete and its weights load into
  the model (no half-written folder ever carries a final name), and the newest one loads
  with `load_checkpoint`;
- the steps logged in metrics.jsonl are at most `--save-steps` past that checkpoint (the
  only work lost is the work since the last checkpoint);
- the next run resumes at that checkpoint's step + 1.

The finished run logged each step 1..N exactly once and its `final` checkpoint is at step N.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_support import av_clip, cli_error, tiny_checkpoint  # noqa: F401  (cli_error is a fixture)
from training_support import memoize_decoding

from avsrctl import checkpoint as ckpt
from avsrctl.cli.main import run as run_cli
from avsrctl.training import run_folder

# 6 utterances, batch 1: three epochs of 6 steps, so the run crosses epoch ends and, on an idle machine
# where a step is quicker than the ~0.1 s the kill moments assume, steps remain for the SIGINT case
MAX_STEPS = 18
SAVE_STEPS = 1
START_TIMEOUT = 120.0  # seconds for a process to import torch, build the model and reach a step
SEED = 20261121  # the random kill moment


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from avsrctl.synth.corpus import generate_corpus

    root = tmp_path_factory.mktemp("faults") / "corpus"
    generate_corpus(
        root, n_utterances=12, n_speakers=3, n_test_speakers=1, size=32, seed=0, jobs=1, valid_fraction=0.25
    )
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    try:  # imageio-ffmpeg's static binary starts ~5x faster than Debian's: shorter steps
        import imageio_ffmpeg

        env.setdefault("AVSRCTL_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    return env


def _command(corpus: Path, out: Path, resume: bool) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "avsrctl",
        "train",
        "--config",
        "tiny",
        "--modality",
        "video",
        "--data",
        str(corpus),
        "--output",
        str(out),
        "--max-steps",
        str(MAX_STEPS),
        "--max-epochs",
        str(MAX_STEPS // 6),
        "--save-steps",
        str(SAVE_STEPS),
        "--set",
        "data.max_batch_size=1",
        "--set",
        "decode.max_new_tokens=2",
        "--set",
        "train.valid_max_utts=1",
        "--set",
        "train.log_every=1",
    ]
    return cmd + (["--resume", "auto"] if resume else [])


class Run:
    """One `avsrctl train` process with its stderr in a file (a pipe could fill and block it)."""

    def __init__(self, corpus: Path, out: Path, resume: bool, index: int):
        self.log = out.parent / f"run{index}.stderr"
        self.out = out
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                _command(corpus, out, resume), stdout=subprocess.DEVNULL, stderr=err, env=_env(), start_new_session=True
            )

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, what: str, poll: float = 0.002, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"training exited ({self.proc.returncode}) before {what}:\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.stderr()[-3000:]}")
            time.sleep(poll)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Signal the process group, as a terminal does for Ctrl-C (the process leads its session)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=120)


def _visible_checkpoints(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _logged_steps(out: Path) -> list[int]:
    return [int(r["step"]) for r in _records(out) if r.get("type") == "train"]


def _new_checkpoints(out: Path, before: set[str]) -> list[str]:
    return [p.name for p in _visible_checkpoints(out) if p.name.startswith("step-") and p.name not in before]


def _saving(out: Path) -> bool:
    try:
        return any(name.startswith(".tmp-") for name in os.listdir(out))
    except FileNotFoundError:
        return False


class Checker:
    """Checks the run folder after each interruption; keeps one model to load weights into."""

    def __init__(self, out: Path):
        self.out = out
        self.model = None
        self.history: list[tuple[str, int, int]] = []  # (how, checkpoint step, last logged step)

    def after_interrupt(self, how: str) -> int:
        out = self.out
        visible = _visible_checkpoints(out)
        for p in visible:  # a folder under a final name is always complete
            assert ckpt.is_complete(p, resumable=True), f"{how}: {p.name} is visible but holds {sorted(os.listdir(p))}"
        latest = ckpt.find_latest(out)
        assert latest is not None, f"{how}: no complete checkpoint after the interruption"
        newest = max(int(p.name[len("step-") :]) for p in visible if p.name.startswith("step-"))
        # --resume auto takes the newest complete checkpoint, even when `latest` lags behind it
        assert ckpt.read_meta(latest)["step"] == newest, (how, latest.name, newest)
        if self.model is None:
            from avsrctl.models.builder import build_model

            meta = ckpt.read_meta(latest)
            self.model = build_model(ckpt.read_checkpoint_config(latest), modalities=meta["modalities"])
        for p in visible:
            ckpt.load_weights_into(self.model, p)  # names, shapes, safetensors: every one loads
        model, cfg, meta = ckpt.load_checkpoint(latest)  # what decode/eval/transcribe do
        assert cfg.model.modality == "video" and meta["step"] >= 1
        state = ckpt.read_json(latest / ckpt.STATE)
        assert state["step"] == meta["step"]
        logged = _logged_steps(out)
        last_logged = max(logged, default=0)
        # The only work lost is the work since the newest checkpoint.
        assert last_logged - meta["step"] <= SAVE_STEPS, (how, last_logged, meta["step"])
        if self.history:
            assert meta["step"] >= self.history[-1][1], f"{how}: went back from step {self.history[-1][1]}"
        self.history.append((how, int(meta["step"]), last_logged))
        return int(meta["step"])


def _first_logged_after(out: Path, step: int) -> int | None:
    later = [s for s in _logged_steps(out) if s > step]
    return later[0] if later else None


def _records(out: Path) -> list[dict]:
    records = []
    path = out / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line torn by the kill
            continue
    return records


def _resumes(out: Path) -> int:
    return sum(r.get("event") == "resume" for r in _records(out))


def _resumed_and_stepped(out: Path, resumes_before: int) -> bool:
    """A new process has resumed (one more 'resume' event) and logged a step since."""
    records = _records(out)
    at = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    return len(at) > resumes_before and any(r.get("type") == "train" for r in records[at[-1] :])


@pytest.mark.slow  # six training processes (~40-90 s on two busy cores)
def test_killed_and_interrupted_training_resumes_losing_at_most_the_steps_since_the_last_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    check = Checker(out)
    rng = random.Random(SEED)

    # 1. SIGKILL as soon as the first checkpoint is in place
    run = Run(corpus, out, resume=False, index=1)
    run.wait_for(lambda: (out / run_folder.step_name(1)).is_dir(), "the first checkpoint")
    assert run.kill() == -signal.SIGKILL
    step = check.after_interrupt("killed after the 1st checkpoint")

    # 2. SIGKILL after two more checkpoints
    run = Run(corpus, out, resume=True, index=2)
    seen = {p.name for p in _visible_checkpoints(out)}
    run.wait_for(lambda: len(_new_checkpoints(out, seen)) >= 2, "two more checkpoints")
    assert run.kill() == -signal.SIGKILL
    assert _first_logged_after(out, step) == step + 1  # it resumed where the checkpoint was
    step = check.after_interrupt("killed after the 3rd checkpoint")

    # 3. SIGKILL while a checkpoint is being written (a .tmp-* folder exists), or as soon
    # after the next checkpoint as polling allows when the write was too quick to catch
    run = Run(corpus, out, resume=True, index=3)
    seen = {p.name for p in _visible_checkpoints(out)}
    run.wait_for(lambda: _saving(out) or _new_checkpoints(out, seen), "a checkpoint being written", poll=0.0005)
    assert run.kill() == -signal.SIGKILL
    assert _first_logged_after(out, step) == step + 1
    step = check.after_interrupt(
        "killed while saving" if any(n.startswith(".tmp-") for n in os.listdir(out)) else "killed right after a save"
    )

    # 4. SIGKILL at a random moment after the resumed run's first step
    before = _resumes(out)
    run = Run(corpus, out, resume=True, index=4)
    run.wait_for(lambda: _resumed_and_stepped(out, before), "the first resumed step", poll=0.01)
    time.sleep(rng.uniform(0.0, 0.5))  # a step takes ~0.1 s here
    assert run.kill() == -signal.SIGKILL
    assert _first_logged_after(out, step) == step + 1
    step = check.after_interrupt("killed at a random moment")

    # 5. SIGINT (Ctrl-C) once a step has run: a checkpoint of the current step, exit 130
    assert step < MAX_STEPS - 1, f"too few steps left for the SIGINT case ({check.history})"
    before = _resumes(out)
    run = Run(corpus, out, resume=True, index=5)
    run.wait_for(lambda: _resumed_and_stepped(out, before), "the first resumed step", poll=0.01)
    assert run.kill(signal.SIGINT) == 130, run.stderr()[-3000:]
    err = " ".join(run.stderr().split())
    logged = max(_logged_steps(out))
    assert f"stopped at step {logged}; checkpoint saved to {out / run_folder.step_name(logged)}" in err
    assert err.count("error:") == 1 and "hint: continue with" in err and "Traceback" not in err
    assert ckpt.read_latest_name(out) == run_folder.step_name(logged)
    step = check.after_interrupt("SIGINT")
    assert step == logged  # nothing lost at all

    # 6. the last run finishes
    run = Run(corpus, out, resume=True, index=6)
    assert run.proc.wait(timeout=300) == 0, run.stderr()[-3000:]
    assert _logged_steps(out) == list(range(1, MAX_STEPS + 1))  # each step once, in order
    assert ckpt.read_latest_name(out) == "final"
    assert json.loads((out / "final" / ckpt.META).read_text())["step"] == MAX_STEPS
    events = [r for r in _records(out) if r.get("type") == "event"]
    assert [r["step"] for r in events if r["event"] == "resume"] == [h[1] for h in check.history]
    assert not [r for r in events if r["event"] == "skipped_media"]  # no decode broken by the signals


# ----------------------------------------------------------------- disk full, read-only


def run(argv: list) -> int:
    return run_cli([str(a) for a in argv])


def _train(corpus: Path, out: Path, *extra) -> list:
    return [
        "train",
        "--config",
        "tiny",
        "--modality",
        "video",
        "--data",
        corpus,
        "--output",
        out,
        "--set",
        "data.max_batch_size=1",
        "--set",
        "decode.max_new_tokens=2",
        *extra,
    ]


@pytest.fixture
def small_fs(tmp_path):
    """`small_fs(size, read_only=False)`: a fresh tmpfs of `size` (e.g. '700k'); skips where mounting is
    not permitted (not root, or no CAP_SYS_ADMIN in the container)."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _after_failed_save(out: Path, previous: str) -> None:
    """A failed save leaves no partial folder, and `latest` still names a complete checkpoint."""
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert ckpt.read_latest_name(out) == previous and ckpt.find_latest(out).name == previous
    for p in out.iterdir():
        if p.is_dir():
            assert ckpt.is_complete(p, resumable=True), p


@pytest.mark.slow  # trains until the disk fills (~10 s)
def test_disk_full_during_training(cli_error, corpus, small_fs, monkeypatch):
    memoize_decoding(monkeypatch)
    out = small_fs("700k") / "run"  # room for two checkpoints of the tiny model (~300 KB each)
    line = cli_error(
        _train(corpus, out, "--max-steps", "6", "--save-steps", "1"),
        1,
        f"cannot write checkpoint {out / 'step-000003'}",
        "No space left on device",
        hint=f"the last complete checkpoint is {out / 'step-000002'}, continue from it with --resume auto",
    )
    assert "unexpected" not in line
    _after_failed_save(out, "step-000002")
    ckpt.load_checkpoint(out / "step-000002")


def test_disk_full_injected_into_a_checkpoint_write(cli_error, corpus, tmp_path, monkeypatch):
    """The same without a small filesystem: safetensors' own error for ENOSPC on the 3rd save."""
    from safetensors import SafetensorError

    memoize_decoding(monkeypatch)
    real, calls = ckpt.save_file, []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 6:  # step 3's optimizer file, after its weights were written
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)
    out = tmp_path / "run"
    cli_error(
        _train(corpus, out, "--max-steps", "6", "--save-steps", "1"),
        1,
        f"cannot write checkpoint {out / 'step-000003'}",
        "No space left on device",
        hint=f"the last complete checkpoint is {out / 'step-000002'}",
    )
    _after_failed_save(out, "step-000002")


def test_no_room_for_one_checkpoint_is_refused_before_training(cli_error, corpus, tmp_path, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    out = tmp_path / "run"
    cli_error(
        _train(corpus, out, "--max-steps", "2"),
        1,
        f"output folder {out} has 0.10 MiB free",
        "one checkpoint of this model needs about",
        hint="choose another folder with --output",
    )
    assert _logged_steps(out) == [] and ckpt.list_checkpoints(out) == []  # refused before the first step


def test_disk_full_while_writing_scores_keeps_the_previous_set(cli_error, tmp_path, monkeypatch):
    """hyp.wrd, results.jsonl and wer.json are replaced together or not at all."""
    import errno

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.tsv").write_text(f"{data}\na\t-\ta.wav\t-\t16000\nb\t-\tb.wav\t-\t16000\n")
    (data / "test.wrd").write_text("bin blue at f two now\nset red by g nine soon\n")
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("bin blue at f two now\nset red by g nine\n")
    out = tmp_path / "scores"
    assert run(["eval", "--tsv", data / "test.tsv", "--hyp", hyp, "--output-dir", out]) == 0
    files = sorted(out.iterdir())
    assert [p.name for p in files] == ["hyp.wrd", "results.jsonl", "wer.json"]
    hyp.write_text("a different\nset of hypotheses\n")
    real = Path.write_text

    def full_disk(self, text, *a, **k):
        if self.name.startswith(".results.") and ".tmp" in self.name:  # another of the three is staged already
            real(self, text[: len(text) // 2], *a, **k)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full_disk)
    cli_error(
        ["eval", "--tsv", data / "test.tsv", "--hyp", hyp, "--output-dir", out],
        1,
        f"{out / 'results.jsonl'}: No space left on device",
        unchanged=files,
        hint="the disk is full",
    )
    assert sorted(out.iterdir()) == files  # no temporary file left either


def _unwritable(kind: str, tmp_path: Path, small_fs) -> Path:
    if kind == "read-only filesystem":
        return small_fs("64k", read_only=True) / "out"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker / "out"  # a path through a file: ENOTDIR whoever runs the test


@pytest.mark.parametrize("kind", ["path through a file", "read-only filesystem"])
def test_unwritable_output_folders_are_refused_before_work(cli_error, corpus, tmp_path, small_fs, kind):
    target = _unwritable(kind, tmp_path, small_fs)
    cli_error(_train(corpus, target), 2, f"output folder {target} is not writable", hint="--output")
    ckpt_dir = tiny_checkpoint(tmp_path / "ckpt-run")
    cli_error(
        ["decode", "--checkpoint", ckpt_dir, "--tsv", corpus / "test.tsv", "--output-dir", target],
        2,
        f"--output-dir {target}: cannot write there",
        hint="choose another --output-dir",
    )
    clip = av_clip(tmp_path / "clip.mp4")
    cli_error(
        ["transcribe", clip, "--checkpoint", ckpt_dir, "-o", target / "clip.srt"],
        2,
        f"--output folder {target}: cannot write there",
    )


# ------------------------------------------------------------------------ decode


@pytest.mark.slow  # three decodes, each loading the checkpoint (~15-20 s)
def test_interrupted_decode_keeps_old_results_and_a_rerun_gives_the_same_files(
    cli_error, corpus, tmp_path, monkeypatch, capsys
):
    from avsrctl.models.avsr import AVSRModel

    ckpt_dir = tiny_checkpoint(tmp_path / "ckpt-run")
    args = ["decode", "--checkpoint", ckpt_dir, "--tsv", corpus / "test.tsv", "--batch-size", "1", "--modality", "both"]
    reference = tmp_path / "reference"
    assert run([*args, "--output-dir", reference]) == 0
    capsys.readouterr()
    files = ("hyp.wrd", "results.jsonl", "wer.json")
    kept = {name: (reference / name).read_bytes() for name in files}

    generate, calls = AVSRModel.generate, []

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # half way: the second of four batches
            raise KeyboardInterrupt
        return generate(self, *a, **k)

    monkeypatch.setattr(AVSRModel, "generate", interrupted)
    cli_error(
        [*args, "--output-dir", reference],
        130,
        "interrupted",
        unchanged=[reference / n for n in files],
        hint="rerun the same command",
    )
    assert sorted(p.name for p in reference.iterdir()) == sorted(files)  # no temporary files either

    monkeypatch.setattr(AVSRModel, "generate", generate)
    assert run([*args, "--output-dir", reference]) == 0
    for name in ("hyp.wrd", "results.jsonl"):
        assert (reference / name).read_bytes() == kept[name]
    timing = ("seconds", "utterances_per_second")
    a, b = (json.loads(x) for x in (kept["wer.json"], (reference / "wer.json").read_bytes()))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def test_ctrl_c_in_a_terminal_does_not_break_decodes_in_flight(tmp_path):
    """Ctrl-C reaches the whole foreground process group; ffmpeg runs in a session of its own, so
    the decode in flight finishes and only avsrctl decides what to do (training: save, stop)."""
    import numpy as np

    from avsrctl.data.media import save_video

    clip = tmp_path / "clip.mp4"
    save_video(clip, np.random.default_rng(0).integers(0, 255, (200, 96, 96, 3), dtype=np.uint8))
    script = (
        "import os, signal, sys, threading\n"
        "from avsrctl.data.media import load_video\n"
        "got = []\n"
        "signal.signal(signal.SIGINT, lambda s, f: got.append(s))  # as the trainer does\n"
        "threading.Timer(0.05, lambda: os.killpg(os.getpgrp(), signal.SIGINT)).start()\n"
        f"frames = [load_video({str(clip)!r}).shape[0] for _ in range(4)]\n"
        "print(got, frames)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, start_new_session=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[2] [200, 200, 200, 200]"
