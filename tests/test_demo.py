from __future__ import annotations

import shutil

import pytest

from avsrctl import demo
from conftest import requires_whisper_weights

requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@requires_espeak
def test_speak_writes_a_decodable_sentence(tmp_path):
    from avsrctl.data.media import load_audio

    ctx = demo.DemoContext(tmp_path)
    demo.speak(ctx)
    [clip] = ctx.clips
    assert clip.reference == demo.SENTENCE
    seconds = load_audio(clip.path).shape[0] / 16_000
    assert 1.5 < seconds < 10  # nine words at 120 words per minute


def test_real_clips_come_from_the_media_manifest(media_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AVSRCTL_MEDIA", str(media_dir))
    ctx = demo.DemoContext(tmp_path)
    demo.real_clips(ctx)
    assert 1 <= len(ctx.clips) <= demo.MAX_REAL_CLIPS
    assert all(c.path.is_file() and c.reference for c in ctx.clips)


def test_steps_run_in_order_and_nothing_to_do_is_an_error(tmp_path, capsys):
    seen = []
    steps = (demo.Step("a", lambda ctx: seen.append("a")), demo.Step("b", lambda ctx: seen.append("b")))
    assert demo.main(steps) == 1  # no clips were added
    assert seen == ["a", "b"]
    assert "nothing to transcribe" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow  # model load plus three transcriptions (~10 s on two busy cores)
@requires_espeak
@requires_whisper_weights
def test_demo_end_to_end(media_dir, monkeypatch, capsys):
    monkeypatch.setenv("AVSRCTL_MEDIA", str(media_dir))
    assert demo.main() == 0
    out = capsys.readouterr()
    assert "espeak-ng sentence" in out.out and "jfk.flac" in out.out
    assert "%" in out.out and "done in" in out.err
