"""AVDataset, collate and FrameBucketSampler on a tiny generated corpus and the GRID clips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsrctl.data.dataset import AVDataset, FrameBucketSampler, Sample, collate, load_clip
from avsrctl.data.manifest import Utterance, read_manifest, write_manifest
from avsrctl.data.media import save_audio, save_video
from avsrctl.data.mouth_params import mouth_path
from avsrctl.data.noise import NoiseSpec
from avsrctl.errors import DataError, MediaError, UsageError

FRAMES = [10, 14, 7]  # video lengths of the generated clips (25 fps)


def tone(n: int, hz: float = 300.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / 16000)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three 32x40 clips with audio, one truncated clip, and an audio-only manifest."""
    root = tmp_path_factory.mktemp("corpus")
    utts, audio_only = [], []
    for i, t in enumerate(FRAMES):
        frames = np.full((t, 32, 40, 3), 40 * (i + 1), np.uint8)
        save_video(root / f"c{i}.mp4", frames, audio=tone(640 * t, 200 + 100 * i))
        save_audio(root / f"c{i}.wav", tone(640 * t - 100, 200 + 100 * i))  # not a whole number of frames
        utts.append(Utterance(f"c{i}", root / f"c{i}.mp4", root / f"c{i}.mp4", t, 640 * t, f"clip {i}"))
        audio_only.append(Utterance(f"a{i}", None, root / f"c{i}.wav", 0, 640 * t - 100, f"clip {i}"))
    data = (root / "c1.mp4").read_bytes()
    (root / "bad.mp4").write_bytes(data[: len(data) // 2])
    utts.insert(1, Utterance("bad", root / "bad.mp4", root / "bad.mp4", 14, 8960, "broken clip"))
    write_manifest(root / "av.tsv", root / "av.wrd", root, utts)
    write_manifest(root / "audio.tsv", root / "audio.wrd", root, audio_only)
    return root


def test_sample_shapes_both(corpus):
    ds = AVDataset(read_manifest(corpus / "av.tsv"), "both", roi="none", roi_size=24)
    s = ds[0]
    assert isinstance(s, Sample) and (s.id, s.text, s.n_frames) == ("c0", "clip 0", 10)
    assert s.video.shape == (10, 3, 24, 24) and s.video.dtype == torch.uint8
    assert s.audio.shape == (6400,) and s.audio.dtype == torch.float32
    assert int(s.video[0, 0].float().mean()) == pytest.approx(40, abs=4)  # channel-first RGB kept


def test_audio_only_length_rounds_up(corpus):
    ds = AVDataset(read_manifest(corpus / "audio.tsv"), "audio")
    s = ds[0]
    assert s.video is None and s.n_frames == 10 == math.ceil((6400 - 100) / 640)
    assert s.audio.shape == (6400,) and not s.audio[-100:].any()
    with pytest.raises(UsageError, match="needs video"):
        AVDataset(read_manifest(corpus / "audio.tsv"), "video")


def test_video_only_reads_no_audio(corpus):
    s = AVDataset(read_manifest(corpus / "av.tsv"), "video", roi="none", roi_size=16)[2]
    assert s.audio is None and s.video.shape == (14, 3, 16, 16)


def test_broken_media_is_skipped_not_substituted(corpus):
    ds = AVDataset(read_manifest(corpus / "av.tsv"), "both", roi="none", roi_size=16)
    assert ds[1] is None
    assert "bad.mp4" in ds.skipped["bad"]
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert batch.ids == ["c0", "c1", "c2"]
    assert batch.meta["skipped"] == ["bad"] and "bad.mp4" in batch.meta["skip_reasons"]["bad"]
    assert ds.collate([ds[0]]).meta["skipped"] == []  # reported once, with the batch it fell out of


def test_frame_memory_decodes_each_clip_once_within_its_budget(corpus, monkeypatch):
    import avsrctl.data.dataset as dataset

    calls = []
    real = dataset.load_video
    monkeypatch.setattr(dataset, "load_video", lambda path, **kw: calls.append(Path(path).name) or real(path, **kw))
    manifest = read_manifest(corpus / "av.tsv")
    kept = AVDataset(manifest, "both", roi="none", roi_size=24, frame_memory_mb=1)
    first = [kept[i] for i in (0, 2)]
    again = [kept[i] for i in (0, 2)]
    assert calls == ["c0.mp4", "c1.mp4"]  # the second pass reads no video
    for a, b in zip(first, again):
        assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio) and a.n_frames == b.n_frames
    assert kept[1] is None and kept[1] is None and calls.count("bad.mp4") == 2  # broken clips are not kept
    calls.clear()
    plain = AVDataset(manifest, "both", roi="none", roi_size=24)
    plain[0], plain[0]
    assert calls == ["c0.mp4", "c0.mp4"]


def test_frame_memory_stops_at_its_budget(corpus, monkeypatch):
    import avsrctl.data.dataset as dataset

    calls = []
    real = dataset.load_video
    monkeypatch.setattr(dataset, "load_video", lambda path, **kw: calls.append(Path(path).name) or real(path, **kw))
    ds = AVDataset(read_manifest(corpus / "av.tsv"), "video", roi="none", roi_size=512, frame_memory_mb=8)
    clip = ds[0].video.numel()  # 10 frames of 512x512x3: 7.5 MiB, so one clip fits and the second does not
    assert clip <= 8 << 20 < 2 * clip
    ds[2], ds[0], ds[2]
    assert calls == ["c0.mp4", "c1.mp4", "c1.mp4"]


def test_video_augment_changes_training_clips_by_epoch_and_keeps_the_kept_frames(corpus):
    manifest = read_manifest(corpus / "av.tsv")
    plain = AVDataset(manifest, "video", roi="none", roi_size=24)[0].video
    ds = AVDataset(manifest, "video", roi="none", roi_size=24, frame_memory_mb=1, video_augment=True, seed=3)
    a = ds[0].video
    assert a.shape == plain.shape and a.dtype == torch.uint8 and not torch.equal(a, plain)
    assert torch.equal(ds[0].video, a)  # same seed, epoch and index: the same clip
    ds.set_epoch(1)
    assert not torch.equal(ds[0].video, a)
    assert torch.equal(ds._frames[0], plain)  # the frames kept in memory are never augmented in place


def test_augment_video_moves_recolours_and_flips_the_whole_clip_alike():
    from avsrctl.data.dataset import augment_video

    # a dark mouth-like bar left of centre on a bright field, two identical frames
    clip = torch.full((2, 3, 48, 48), 200, dtype=torch.uint8)
    clip[:, :, 28:34, 8:22] = 40
    flips, centres, means, greys = 0, set(), [], []
    for seed in range(40):
        out = augment_video(clip, np.random.default_rng(seed))
        assert out.shape == clip.shape and out.dtype == torch.uint8
        # one geometric and colour transform for the whole clip: the frames differ by sensor noise only
        assert (out[0].float() - out[1].float()).abs().mean() < 8
        dark = (out[0].float().mean(0) < 120).nonzero().float()  # (n, 2) rows, cols of the bar
        assert len(dark) > 20, "the bar must survive the augmentation"
        flips += int(dark[:, 1].mean() > 24)
        centres.add(round(float(dark[:, 0].mean())))
        means.append(float(out.float().mean()))
        greys.append(float((out[0, 0].float() - out[0, 2].float()).mean()))  # red minus blue: colour gain
    assert 10 <= flips <= 30
    assert len(centres) > 3  # zoom, rotation and shift move the bar
    assert np.std(means) > 5 and max(abs(g) for g in greys) > 5  # brightness, contrast and colour change
    assert all(abs(m - float(clip.float().mean())) < 80 for m in means)
    assert torch.equal(augment_video(clip, np.random.default_rng(3)), augment_video(clip, np.random.default_rng(3)))


def test_collate_pads_and_masks(corpus):
    ds = AVDataset(read_manifest(corpus / "av.tsv"), "both", roi="none", roi_size=16)
    batch = collate([ds[0], ds[2], ds[3]])
    assert batch.lengths.tolist() == [10, 14, 7]
    assert batch.audio.shape == (3, 640 * 14) and batch.video.shape == (3, 14, 3, 16, 16)
    assert batch.mask.tolist()[2] == [True] * 7 + [False] * 7
    assert not batch.audio[0, 6400:].any() and batch.audio[0, :6400].abs().max() > 0.1
    assert not batch.video[2, 7:].any() and batch.video[2, :7].all()
    assert batch.audio_lengths.tolist() == [6400, 8960, 4480]


def test_collate_empty_batch():
    batch = collate([None, None], skipped=["x", "y"])
    assert len(batch) == 0 and batch.audio is None and batch.meta["skipped"] == ["x", "y"]
    assert batch.lengths.shape == (0,) and batch.max_frames == 0


def test_dataloader_reports_skips_from_workers(corpus):
    ds = AVDataset(read_manifest(corpus / "av.tsv"), "audio")
    sampler = FrameBucketSampler(ds.lengths, max_frames=100, max_batch=8, shuffle=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate, num_workers=1)
    batches = list(loader)
    assert sorted(i for b in batches for i in b.ids) == ["c0", "c1", "c2"]
    assert [s for b in batches for s in b.meta["skipped"]] == ["bad"]
    assert ds.skipped == {}  # the worker's dict, not ours: why batches carry the ids


def test_training_noise_is_seeded_by_epoch(corpus):
    manifest = read_manifest(corpus / "audio.tsv")
    spec = NoiseSpec("white", 0.0, prob=1.0)
    clean = AVDataset(manifest, "audio")[0].audio
    a, b = AVDataset(manifest, "audio", noise=spec, seed=4), AVDataset(manifest, "audio", noise=spec, seed=4)
    assert torch.equal(a[0].audio, b[0].audio) and not torch.equal(a[0].audio, clean)
    b.set_epoch(1)
    assert not torch.equal(a[0].audio, b[0].audio)
    # the noise covers the real samples; the alignment padding after them stays silent
    assert not a[0].audio[-100:].any()


# ---------------------------------------------------------------------- sampler


LENGTHS = [5, 80, 33, 12, 12, 60, 7, 150, 45, 20, 90, 3, 64, 28, 100, 9]


def test_sampler_respects_the_frame_budget():
    sampler = FrameBucketSampler(LENGTHS, max_frames=120, max_batch=4, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for b in batches:
        padded = len(b) * max(LENGTHS[i] for i in b)
        assert len(b) <= 4 and (padded <= 120 or len(b) == 1)
    assert [7] in batches  # 150 frames > budget: a batch of its own
    assert len(sampler) == len(batches)


def test_sampler_groups_similar_lengths():
    sampler = FrameBucketSampler(LENGTHS, max_frames=200, max_batch=16, shuffle=False)
    batches = list(sampler)
    flat = [LENGTHS[i] for b in batches for i in b]
    assert flat == sorted(LENGTHS)  # unshuffled: ascending, so padding stays small


def test_sampler_is_deterministic_by_seed_and_epoch():
    def run(seed, epoch):
        s = FrameBucketSampler(LENGTHS, max_frames=120, max_batch=4, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)


@pytest.mark.parametrize("replicas", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards_across_replicas(replicas, drop_last):
    shards = []
    for rank in range(replicas):
        s = FrameBucketSampler(
            LENGTHS, max_frames=120, max_batch=4, seed=2, num_replicas=replicas, rank=rank, drop_last=drop_last
        )
        s.set_epoch(3)
        shards.append(list(s))
    assert len({len(b) for b in shards}) == 1  # every rank runs the same number of steps
    total = len(FrameBucketSampler(LENGTHS, max_frames=120, max_batch=4, seed=2).all_batches())
    seen = {i for shard in shards for b in shard for i in b}
    if drop_last:
        assert len(shards[0]) == total // replicas
    else:
        assert seen == set(range(len(LENGTHS))) and len(shards[0]) == math.ceil(total / replicas)


def test_sampler_rejects_bad_arguments():
    with pytest.raises(UsageError, match="must be positive"):
        FrameBucketSampler(LENGTHS, max_frames=0, max_batch=4)
    with pytest.raises(UsageError, match=r"rank \(2\) must be in"):
        FrameBucketSampler(LENGTHS, max_frames=10, max_batch=4, num_replicas=2, rank=2)


# ---------------------------------------------------------------------- load_clip


def test_load_clip_grid(media_dir):
    batch = load_clip(media_dir / "video" / "grid_bbaf2n.mpg", "both")
    assert batch.ids == ["grid_bbaf2n"] and batch.lengths.tolist() == [75]
    assert batch.audio.shape == (1, 48000) and batch.video.shape == (1, 75, 3, 96, 96)


def test_load_clip_streams(corpus, tmp_path):
    audio_only = load_clip(corpus / "c0.wav")
    assert audio_only.video is None and audio_only.audio.shape == (1, 6400)
    with pytest.raises(MediaError, match=r"c0\.wav: --modality video needs video, but the file has no video"):
        load_clip(corpus / "c0.wav", "video")
    save_video(tmp_path / "mute.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    mute = load_clip(tmp_path / "mute.mp4", roi="none", roi_size=16)
    assert mute.audio is None and mute.video.shape == (1, 5, 3, 16, 16)
    with pytest.raises(MediaError, match=r"mute\.mp4: --modality both needs audio"):
        load_clip(tmp_path / "mute.mp4", "both")


def _lrs3_like_lengths(n: int, seed: int = 0) -> list[int]:
    """Log-normal lengths around LRS3's mean (260 frames = 10.4 s), clipped to 1-60 s."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(260) - 0.18, 0.6, n), 25, 1500).astype(int).tolist()


@pytest.mark.parametrize("replicas", [8, 64])
def test_sampler_shards_have_equal_counts_and_balanced_frames(replicas):
    """Every rank runs the same number of steps and gets padded-frame totals within 5% of the others."""
    lengths = _lrs3_like_lengths(20_000)
    shards = [
        list(FrameBucketSampler(lengths, 6000, 32, seed=0, num_replicas=replicas, rank=r)) for r in range(replicas)
    ]
    assert len({len(s) for s in shards}) == 1
    padded = [sum(len(b) * max(lengths[i] for i in b) for b in s) for s in shards]
    assert max(padded) / min(padded) - 1 <= 0.05
    every = FrameBucketSampler(lengths, 6000, 32, seed=0).all_batches()
    assert {i for s in shards for b in s for i in b} == set(range(len(lengths)))  # every utterance is seen
    assert len(shards[0]) == math.ceil(len(every) / replicas)


def test_sampler_ranks_share_each_step_of_the_single_process_order():
    """Step k of every rank together runs the k-th group of consecutive batches of the unsharded order
    (what one process accumulating `replicas` micro-batches would run), whichever rank gets which."""
    lengths = _lrs3_like_lengths(3000, seed=1)
    every = FrameBucketSampler(lengths, 2000, 16, seed=4).all_batches()
    shards = [list(FrameBucketSampler(lengths, 2000, 16, seed=4, num_replicas=4, rank=r)) for r in range(4)]
    for k in range(len(every) // 4):
        assert sorted(map(tuple, (s[k] for s in shards))) == sorted(map(tuple, every[4 * k : 4 * k + 4]))


def test_sampler_needs_no_torch():
    """The sampler and the manifest reader load without torch (a 150k-row corpus in ~200 MB)."""
    import subprocess
    import sys

    code = (
        "import sys; import avsrctl.data.sampler, avsrctl.data.manifest; sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_epoch_travels_with_the_index(corpus):
    """Workers kept alive across epochs hold their own dataset copy: (index, epoch) reaches it."""
    manifest = read_manifest(corpus / "av.tsv")
    ds = AVDataset(manifest, "video", roi="none", roi_size=24, video_augment=True, seed=1)
    ds.set_epoch(3)
    want = ds[0].video
    fresh = AVDataset(manifest, "video", roi="none", roi_size=24, video_augment=True, seed=1)
    got = fresh[(0, 3)].video
    assert torch.equal(got, want) and fresh.epoch == 3
    assert not torch.equal(fresh[(0, 4)].video, want)  # another epoch, another draw


def test_articulation_targets_travel_with_the_frames_and_a_corrupted_clip_has_none(corpus, tmp_path):
    manifest = read_manifest(corpus / "av.tsv")
    good = [u for u in manifest if u.id != "bad"]
    tracks = {}
    for i, u in enumerate(good):
        # one frame short for c0 (a decoder may give a frame more than the renderer wrote)
        tracks[u.id] = np.linspace(0, 1, (u.n_frames - (i == 0)) * 7).reshape(-1, 7).astype(np.float16)
        np.save(mouth_path(u.video), tracks[u.id])
    try:
        ds = AVDataset(manifest, "video", roi="none", roi_size=24, articulation=True)
        s0 = ds[0]
        assert s0.articulation.shape == (s0.n_frames, 7)
        expect = np.concatenate([tracks["c0"], tracks["c0"][-1:]]).astype(np.float32)
        assert np.array_equal(s0.articulation.numpy(), expect)  # the last value repeated
        batch = ds.collate([ds[0], ds[2]])
        assert batch.articulation.shape == (2, batch.max_frames, 7)
        assert torch.isnan(batch.articulation[0, FRAMES[0] :]).all()  # padding has no target
        assert not torch.isnan(batch.articulation[1, : FRAMES[1]]).any()
        assert AVDataset(manifest, "video", roi="none", roi_size=24)[0].articulation is None  # off by default
        corrupted = AVDataset(manifest, "video", roi="none", roi_size=24, articulation=True, video_corruption=1.0)
        assert corrupted[2].articulation is None  # a corrupted clip no longer shows the rendered mouth
        mixed = collate([s0, corrupted[2]])
        assert not torch.isnan(mixed.articulation[0, : s0.n_frames]).any() and torch.isnan(mixed.articulation[1]).all()
        # the fusion's sync classifier learns corrupted clips as out of sync: the batch says which they are
        assert mixed.video_corrupted.tolist() == [False, True] and batch.video_corrupted is None
        mouth_path(good[1].video).unlink()
        with pytest.raises(DataError, match=r"c1\.mouth\.npy: no mouth parameters"):
            ds[2]
    finally:
        for u in good:
            mouth_path(u.video).unlink(missing_ok=True)
