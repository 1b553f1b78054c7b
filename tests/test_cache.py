from __future__ import annotations

import pytest
import torch
from training_support import (
    FakeAVSR,
    fake_batch,
    make_corpus,
    memoize_decoding,
    read_metrics,
    tiny_config,
    train_losses,
)

from avsrctl.cli.main import run
from avsrctl.errors import UsageError
from avsrctl.training.cache import FeatureCache, cache_info, cache_streams, check_cacheable
from avsrctl.training.run import run_training


@pytest.fixture
def media(tmp_path):
    files = {}
    for uid in ("a", "b"):
        for stream in ("audio", "video"):
            p = tmp_path / "media" / f"{uid}.{stream}"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(f"{uid}-{stream}".encode())
            files.setdefault(uid, {})[stream] = p
    return files


def _cache(tmp_path, media, model, roi_size=32, **kw):
    return FeatureCache(
        tmp_path / "cache",
        media=media,
        identities={"audio": model.audio_encoder.identity, "video": model.video_encoder.identity},
        preprocessing={"roi": "none", "roi_size": roi_size},
        **kw,
    )


def _shards(tmp_path, stream="*"):
    return list((tmp_path / "cache").glob(f"{stream}/*.safetensors"))


def test_second_fill_reads_from_disk_and_matches(tmp_path, media):
    torch.manual_seed(0)
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    first = fake_batch()
    cache.fill(first, model, ("audio", "video"))
    assert model.encoder_calls == 2 and cache.stats() == {"hits": 0, "misses": 4}
    cache.flush()
    assert len(_shards(tmp_path)) == 2  # one shard per stream, not one file per utterance
    other = _cache(tmp_path, media, model)  # a new run (or rank) reads what the first one wrote
    second = fake_batch()  # other random media tensors: the cache must not look at them
    other.fill(second, model, ("audio", "video"))
    assert model.encoder_calls == 2 and other.stats()["hits"] == 4
    for name in ("audio_features", "video_features"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.shape == b.shape and b.dtype == torch.float32  # stored float16, read as the compute dtype
        for i, n in enumerate(first.lengths.tolist()):
            k = 2 * n if name == "audio_features" else n
            torch.testing.assert_close(b[i, :k], a[i, :k], rtol=1e-3, atol=1e-3)  # float16: ~3 digits
            assert torch.equal(b[i, :k], a[i, :k].half().float())
            assert not b[i, k:].any()  # padding is zero
    assert model(second, "both").loss.isfinite()


def test_float16_halves_the_bytes(tmp_path, media):
    """The same entries take half the bytes of float32 (the safetensors header aside)."""
    from safetensors.torch import save_file

    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    batch = fake_batch()
    cache.fill(batch, model, ("audio",))
    cache.flush()
    (shard,) = _shards(tmp_path, "audio")
    rows = {str(i): batch.audio_features[i, : 2 * n].contiguous() for i, n in enumerate(batch.lengths.tolist())}
    save_file(rows, str(tmp_path / "f32.safetensors"))
    payload = sum(r.numel() for r in rows.values())
    f16 = shard.stat().st_size
    f32 = (tmp_path / "f32.safetensors").stat().st_size
    assert f32 - f16 >= 2 * payload - 400 and f16 < 0.5 * f32 + 400  # headers differ by the key names
    info = cache_info(tmp_path / "cache")
    assert info["streams"]["audio"]["dtypes"] == {"float16": 2}


def test_values_beyond_float16_are_kept_in_float32(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    big = torch.full((8, 4), 1e6)
    cache._write("audio", "k" * 40, big)
    cache.flush()
    again = _cache(tmp_path, media, model)
    assert torch.equal(again._read("audio", "k" * 40), big)


def test_shards_hold_many_entries_and_rotate_by_size(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model, shard_bytes=3 * 8 * 4 * 2)  # three (8, 4) float16 entries a shard
    for i in range(7):
        cache._write("audio", f"{i:040d}", torch.randn(8, 4))
    assert len(_shards(tmp_path, "audio")) == 2 and len(cache.pending["audio"]) == 1
    del cache  # the rest is written when the cache goes away (end of the process)
    again = _cache(tmp_path, media, model)
    assert all(again._read("audio", f"{i:040d}") is not None for i in range(7))
    assert cache_info(tmp_path / "cache")["streams"]["audio"]["entries"] == 7


def test_readers_see_shards_written_later_by_other_writers(tmp_path, media):
    model = FakeAVSR()
    reader = _cache(tmp_path, media, model, rescan_s=0.0)
    writer = _cache(tmp_path, media, model)
    writer.fill(fake_batch(), model, ("video",))
    assert reader._read("video", writer.key("video", "a", 4)) is None  # still in the writer's memory
    writer.flush()
    assert reader._read("video", writer.key("video", "a", 4)) is not None
    import pickle

    worker = pickle.loads(pickle.dumps(reader))  # a spawned DataLoader worker's copy: no open handles travel
    key = writer.key("video", "b", 3)
    assert torch.equal(worker._read("video", key), reader._read("video", key))
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # written under a temporary name, then renamed


def test_old_per_utterance_cache_is_refused(tmp_path, media):
    old = tmp_path / "cache" / "audio" / "ab"
    old.mkdir(parents=True)
    (old / "ab12.safetensors").write_bytes(b"x")
    with pytest.raises(UsageError, match="feature cache of an earlier avsrctl") as e:
        _cache(tmp_path, media, FakeAVSR())
    assert "delete" in e.value.hint
    assert run(["cache", "info", str(tmp_path / "cache")]) == 2


def test_cache_info_cli(tmp_path, media, capsys):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    cache.fill(fake_batch(), model, ("audio", "video"))
    cache.flush()
    assert run(["cache", "info", str(tmp_path / "cache"), "--format", "json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 4 and info["streams"]["video"]["encoders"] == {"fake-video-v1": 2}
    assert info["bytes"] == sum(p.stat().st_size for p in _shards(tmp_path))
    assert info["streams"]["video"]["hours"] == pytest.approx(7 / 25 / 3600)  # 4 + 3 frames at 25 Hz
    assert run(["cache", "info", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "audio" in text and "fake-audio-v1" in text and "entries" in text
    assert run(["cache", "info", str(tmp_path / "nowhere")]) == 2


def test_video_augment_with_a_video_cache_is_refused(tmp_path, monkeypatch):
    """Augmented clips would be stored under the clean clip's key (issue 15): refused before training."""
    memoize_decoding(monkeypatch)
    corpus = make_corpus(tmp_path / "corpus", n=4)
    cfg = tiny_config(
        corpus,
        tmp_path / "out",
        train__max_steps=1,
        data__video_augment=True,
        train__cache_features=str(tmp_path / "features"),
    )
    with pytest.raises(UsageError, match=r"--cache-features .* data\.video_augment=true"):
        run_training(cfg, modality="both")
    assert check_cacheable(FakeAVSR(), "audio", video_augment=True) == {"audio": "fake-audio-v1"}


def test_changed_file_or_encoder_or_roi_misses(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    cache.fill(fake_batch(), model, ("video",))
    media["a"]["video"].write_bytes(b"edited clip")
    cache.fill(fake_batch(), model, ("video",))
    assert cache.stats() == {"hits": 1, "misses": 3}  # only 'a' was recomputed
    cache.flush()
    model.video_encoder.identity = "fake-video-v2"
    other = _cache(tmp_path, media, model)
    other.fill(fake_batch(), model, ("video",))
    assert other.stats() == {"hits": 0, "misses": 2}
    resized = _cache(tmp_path, media, model, roi_size=64)
    resized.fill(fake_batch(), model, ("video",))
    assert resized.stats() == {"hits": 0, "misses": 2}


def test_damaged_shard_is_skipped_and_its_entries_recomputed(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    cache.fill(fake_batch(), model, ("audio",))
    cache.flush()
    for f in _shards(tmp_path, "audio"):
        f.write_bytes(b"garbage")
    again = _cache(tmp_path, media, model)
    again.fill(fake_batch(), model, ("audio",))
    assert again.stats() == {"hits": 0, "misses": 2}
    assert cache_info(tmp_path / "cache")["streams"]["audio"]["damaged"]


def test_noise_keeps_audio_out_of_the_cache():
    assert cache_streams("both", noisy_audio=True) == ("video",)
    assert cache_streams("audio", noisy_audio=True) == ()
    assert cache_streams("both", noisy_audio=False) == ("audio", "video")


def test_trainable_encoder_cannot_be_cached():
    model = FakeAVSR()
    assert check_cacheable(model, "video") == {"video": "fake-video-v1"}
    model.audio_encoder.proj.weight.requires_grad_(True)
    with pytest.raises(UsageError, match="audio encoder is trainable"):
        check_cacheable(model, "both")


@pytest.mark.slow
def test_cached_epochs_give_the_uncached_losses(tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    corpus = make_corpus(tmp_path / "corpus", n=16)
    plain = tmp_path / "plain"
    run_training(tiny_config(corpus, plain, train__max_epochs=2), modality="both")
    cached = tmp_path / "cached"
    cache_dir = tmp_path / "features"
    result = run_training(
        tiny_config(corpus, cached, train__max_epochs=2, train__cache_features=str(cache_dir)), modality="both"
    )  # both streams: Whisper and vision features
    n_train = sum(1 for _ in open(corpus / "train.tsv")) - 1
    # epoch 1 computes one entry per utterance and stream, epoch 2 reads them all back
    assert result.cache["misses"] >= 2 * n_train and result.cache["hits"] >= 2 * n_train
    expected, got = train_losses(plain), train_losses(cached)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    valid_plain = [v["loss"] for v in read_metrics(plain, "valid")]
    assert [v["loss"] for v in read_metrics(cached, "valid")] == pytest.approx(valid_plain, rel=1e-5)
    again = run_training(
        tiny_config(
            corpus, tmp_path / "again", train__max_steps=1, train__save_every=0, train__cache_features=str(cache_dir)
        ),
        modality="both",
    )
    assert again.cache["misses"] == 0  # a new run reuses the features of the earlier one


def test_warm_cache_skips_media_decoding(tmp_path, monkeypatch):
    """Once every stream is cached, a run reads features instead of decoding clips with ffmpeg."""
    import avsrctl.data.dataset as dataset

    corpus = make_corpus(tmp_path / "corpus", n=12)
    cache_dir = tmp_path / "features"
    run_training(
        tiny_config(
            corpus, tmp_path / "cold", train__max_epochs=1, train__save_every=0, train__cache_features=str(cache_dir)
        ),
        modality="both",
    )
    decoded = []
    original = dataset.decode_sample
    monkeypatch.setattr(dataset, "decode_sample", lambda uid, *a, **k: decoded.append(uid) or original(uid, *a, **k))
    warm = run_training(
        tiny_config(
            corpus, tmp_path / "warm", train__max_epochs=1, train__save_every=0, train__cache_features=str(cache_dir)
        ),
        modality="both",
    )
    assert warm.cache["misses"] == 0 and warm.cache["hits"] > 0
    assert decoded == []  # neither training nor validation batches touched the media
