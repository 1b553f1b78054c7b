from __future__ import annotations

import pytest
import torch

from avsrctl.errors import UsageError
from avsrctl.training.cache import FeatureCache, cache_streams, check_cacheable
from avsrctl.training.run import run_training
from training_support import FakeAVSR, fake_batch, make_corpus, memoize_decoding, read_metrics, tiny_config, train_losses


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


def _cache(tmp_path, media, model, roi_size=32):
    return FeatureCache(tmp_path / "cache", media=media,
                        identities={"audio": model.audio_encoder.identity, "video": model.video_encoder.identity},
                        preprocessing={"roi": "none", "roi_size": roi_size})


def test_second_fill_reads_from_disk_and_matches(tmp_path, media):
    torch.manual_seed(0)
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    first = fake_batch()
    cache.fill(first, model, ("audio", "video"))
    assert model.encoder_calls == 2 and cache.stats() == {"hits": 0, "misses": 4}
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 4
    second = fake_batch()  # other random media tensors: the cache must not look at them
    cache.fill(second, model, ("audio", "video"))
    assert model.encoder_calls == 2 and cache.stats()["hits"] == 4
    for name in ("audio_features", "video_features"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.shape == b.shape
        for i, n in enumerate(first.lengths.tolist()):
            k = 2 * n if name == "audio_features" else n
            assert torch.equal(a[i, :k], b[i, :k])
            assert not b[i, k:].any()  # padding is zero
    assert model(second, "both").loss.isfinite()


def test_changed_file_or_encoder_or_roi_misses(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    cache.fill(fake_batch(), model, ("video",))
    media["a"]["video"].write_bytes(b"edited clip")
    cache.fill(fake_batch(), model, ("video",))
    assert cache.stats() == {"hits": 1, "misses": 3}  # only 'a' was recomputed
    model.video_encoder.identity = "fake-video-v2"
    other = _cache(tmp_path, media, model)
    other.fill(fake_batch(), model, ("video",))
    assert other.stats() == {"hits": 0, "misses": 2}
    resized = _cache(tmp_path, media, model, roi_size=64)
    resized.fill(fake_batch(), model, ("video",))
    assert resized.stats() == {"hits": 0, "misses": 2}


def test_damaged_entry_is_recomputed(tmp_path, media):
    model = FakeAVSR()
    cache = _cache(tmp_path, media, model)
    cache.fill(fake_batch(), model, ("audio",))
    for f in (tmp_path / "cache" / "audio").rglob("*.safetensors"):
        f.write_bytes(b"garbage")
    cache.fill(fake_batch(), model, ("audio",))
    assert cache.stats() == {"hits": 0, "misses": 4}


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
    result = run_training(tiny_config(corpus, cached, train__max_epochs=2, train__cache_features=str(cache_dir)),
                          modality="both")  # both streams: Whisper and vision features
    n_train = sum(1 for _ in open(corpus / "train.tsv")) - 1
    # epoch 1 computes one entry per utterance and stream, epoch 2 reads them all back
    assert result.cache["misses"] >= 2 * n_train and result.cache["hits"] >= 2 * n_train
    expected, got = train_losses(plain), train_losses(cached)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    valid_plain = [v["loss"] for v in read_metrics(plain, "valid")]
    assert [v["loss"] for v in read_metrics(cached, "valid")] == pytest.approx(valid_plain, rel=1e-5)
    again = run_training(tiny_config(corpus, tmp_path / "again", train__max_steps=1, train__save_every=0,
                                     train__cache_features=str(cache_dir)), modality="both")
    assert again.cache["misses"] == 0  # a new run reuses the features of the earlier one


def test_warm_cache_skips_media_decoding(tmp_path, monkeypatch):
    """Once every stream is cached, a run reads features instead of decoding clips with ffmpeg."""
    import avsrctl.data.dataset as dataset

    corpus = make_corpus(tmp_path / "corpus", n=12)
    cache_dir = tmp_path / "features"
    run_training(tiny_config(corpus, tmp_path / "cold", train__max_epochs=1, train__save_every=0,
                             train__cache_features=str(cache_dir)), modality="both")
    decoded = []
    original = dataset.decode_sample
    monkeypatch.setattr(dataset, "decode_sample", lambda uid, *a, **k: decoded.append(uid) or original(uid, *a, **k))
    warm = run_training(tiny_config(corpus, tmp_path / "warm", train__max_epochs=1, train__save_every=0,
                                    train__cache_features=str(cache_dir)), modality="both")
    assert warm.cache["misses"] == 0 and warm.cache["hits"] > 0
    assert decoded == []  # neither training nor validation batches touched the media
