"""The run folder of `avsrctl train`: one run at a time (a lock), resume only the same run (seed),
nothing written before the config builds, leftovers of a killed save cleaned, Ctrl-C saves first
(issue 16, items 1, 2, 6, 8, 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_support import cli_error, fake_corpus, tiny_checkpoint  # noqa: F401  (cli_error is a fixture)
from training_support import make_corpus, memoize_decoding, tiny_config

from avsrctl import checkpoint as ckpt
from avsrctl.training import run_folder
from avsrctl.training.run import run_training
from avsrctl.training.signals import TrainingInterrupted

GOOD = b"a good config from the run that is still going\n"
REPO = Path(__file__).resolve().parents[1]


def _train(data: Path, out: Path, *extra) -> list:
    return ["train", "--config", "tiny", "--data", data, "--output", out, *extra]


def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock, as a running `avsrctl train` does."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from avsrctl.training.run_folder import RunLock\n"
        "RunLock(Path(sys.argv[1])).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


@pytest.mark.parametrize("resume", [[], ["--resume", "auto"]])
def test_a_second_training_into_a_busy_run_folder_is_refused_naming_the_pid(cli_error, tmp_path, resume):
    corpus = fake_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_bytes(GOOD)
    holder = _hold_lock(out)
    try:
        before = sorted(p.name for p in out.iterdir())
        cli_error(_train(corpus, out, *resume), 2, f"pid {holder.pid}", str(out), unchanged=[out / "config.yaml"])
        assert sorted(p.name for p in out.iterdir()) == before  # no metrics.jsonl, no checkpoint
    finally:
        holder.kill()  # SIGKILL: the lock dies with the process
        holder.wait()
    with run_folder.RunLock(out):  # free again: nothing stuck behind
        assert (out / run_folder.LOCK).read_text().strip() == str(os.getpid())
    assert not (out / run_folder.LOCK).exists()


def test_resume_auto_with_another_seed_is_refused_naming_both(cli_error, tmp_path):
    corpus = fake_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    step = tiny_checkpoint(out, "both", "step-000007", "train.seed=1")
    for name in (ckpt.OPTIMIZER, ckpt.STATE):  # resumable as far as the folder goes
        (step / name).write_bytes(b"{}")
    cli_error(_train(corpus, out, "--resume", "auto", "--seed", "2"), 2, "seed 1", "seed 2", hint="--seed 1")


def test_an_empty_config_file_is_an_error(cli_error, tmp_path):
    corpus = fake_corpus(tmp_path / "corpus")
    empty = tmp_path / "c.yaml"
    empty.write_text("\n# nothing\n")
    cli_error(["train", "--config", empty, "--data", corpus, "--output", tmp_path / "run"], 2, f"{empty}: empty")
    assert not (tmp_path / "run").exists()


def test_no_config_and_no_hub_names_the_offline_preset_at_once(cli_error, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = fake_corpus(tmp_path / "corpus")
    started = time.monotonic()
    cli_error(["train", "--data", corpus, "--output", tmp_path / "run"], 2, "default preset", "--config offline-small")
    assert time.monotonic() - started < 10
    assert not (tmp_path / "run").exists()


def test_a_config_that_cannot_build_writes_nothing_into_the_run_folder(cli_error, tmp_path):
    corpus = fake_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    missing = tmp_path / "no-such-ct2-folder"
    cli_error(
        _train(corpus, out, "--set", "model.audio_encoder.source=ct2", "--set", f"model.audio_encoder.name={missing}"),
        1,
        str(missing),
    )
    assert not out.exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_refused_run_leaves_nothing_new_in_the_run_folder(cli_error, tmp_path, existing):
    """A run refused after the run folder was set up (here --init-from a missing checkpoint) used
    to leave it holding config.yaml alone (and an old run's metrics.jsonl deleted)."""
    corpus = fake_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    if existing:
        out.mkdir()
        (out / "metrics.jsonl").write_bytes(b'{"type": "train", "step": 1}\n')
    before = sorted(p.name for p in out.iterdir()) if existing else None
    missing = tmp_path / "no-such-checkpoint"
    cli_error(
        _train(corpus, out, "--init-from", missing),
        1,
        str(missing),
        unchanged=[out / "metrics.jsonl"] if existing else (),
    )
    if existing:
        assert sorted(p.name for p in out.iterdir()) == before
    else:
        assert not out.exists()


def test_ctrl_c_before_the_first_step_says_nothing_was_saved(cli_error, tmp_path, monkeypatch):
    """Ctrl-C while the model is built (minutes for hub weights) used to suggest `--resume auto`,
    which has nothing to resume from."""
    from avsrctl.models import builder

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "build_model", interrupted)
    corpus = fake_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    line = cli_error(_train(corpus, out), 130, "nothing was saved")
    assert "--resume" not in line
    assert not out.exists()


# ---------------------------------------------------------------- real (tiny) training runs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=8)


def test_leftovers_of_a_killed_save_are_cleaned_by_the_next_run(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    partial = out / ".tmp-epoch-0001"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half a file")
    torn = out / ".config.4194304.tmp.yaml"  # an atomic write whose process died
    torn.write_text("data: {")
    run_training(tiny_config(corpus, out, train__max_steps=1, train__max_epochs=1), modality="video")
    assert not partial.exists() and not torn.exists()
    assert ckpt.is_complete(out / "final") and not (out / run_folder.LOCK).exists()


def test_ctrl_c_between_steps_saves_without_the_due_validation(corpus, tmp_path, monkeypatch):
    import avsrctl.training.trainer as trainer_module

    memoize_decoding(monkeypatch)
    validations = []
    original = trainer_module.validate
    monkeypatch.setattr(trainer_module, "validate", lambda *a, **k: validations.append(k["step"]) or original(*a, **k))
    cfg = tiny_config(corpus, tmp_path / "run", train__max_epochs=2, train__eval_steps=1)

    def hook(trainer):
        step = trainer._optimizer_step

        def then_ctrl_c(micro):
            done = step(micro)
            trainer.request_stop(signal.SIGINT)  # Ctrl-C during the first step
            return done

        trainer._optimizer_step = then_ctrl_c

    with pytest.raises(TrainingInterrupted, match="stopped at step 1"):
        run_training(cfg, modality="video", trainer_hook=hook)
    assert validations == []  # --eval-steps 1 made one due: the interrupt comes first
    assert ckpt.read_meta(ckpt.find_latest(tmp_path / "run"))["step"] == 1


def test_ctrl_c_during_validation_stops_it_and_saves(corpus, tmp_path, monkeypatch):
    import avsrctl.training.trainer as trainer_module

    memoize_decoding(monkeypatch)
    trainers = []
    original = trainer_module.validate

    def ctrl_c_then_validate(*a, **k):
        trainers[0].request_stop(signal.SIGINT)  # the signal arrives as the validation pass starts
        return original(*a, **k)

    monkeypatch.setattr(trainer_module, "validate", ctrl_c_then_validate)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="checkpoint saved"):
        run_training(tiny_config(corpus, out, train__max_epochs=2), modality="video", trainer_hook=trainers.append)
    records = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"type": "valid"' in line]
    assert records == [] and not (out / "best").exists()  # the pass was abandoned, not finished
    saved = ckpt.find_latest(out)
    assert saved is not None and ckpt.read_meta(saved)["step"] == trainers[0].steps_per_epoch


def test_checkpoint_weights_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = tiny_checkpoint(tmp_path / "run", "audio")
    finally:
        os.umask(old)
    for name in (ckpt.WEIGHTS, ckpt.META, ckpt.CONFIG):
        assert (path / name).stat().st_mode & 0o777 == 0o644, name
