"""From a manifest to padded batches: decoding, alignment, noise, length-bucketed sampling.

`AVDataset[i]` decodes one utterance into a `Sample` (video as mouth crops (T, 3, H, W)
uint8, audio cut/padded to 640 * T samples), or returns None when the media cannot be
decoded: the reason is kept in `dataset.skipped[id]` and the id travels with the next batch
in `batch.meta["skipped"]` (also from DataLoader workers, whose `skipped` dict the main
process never sees). No other utterance is substituted: a skipped utterance is missing,
not duplicated.

`FrameBucketSampler` (in `sampler.py`, re-exported here) yields lists of indices whose padded
size (count x longest) stays within a frame budget, so a batch of long utterances holds fewer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avsrctl.data.align import align_audio, frames_for_samples
from avsrctl.data.batch import Batch
from avsrctl.data.corrupt import corrupt_video, gaussian_blur
from avsrctl.data.manifest import SAMPLES_PER_FRAME, Manifest
from avsrctl.data.media import load_audio, load_video, probe
from avsrctl.data.mouth_params import mouth_path
from avsrctl.data.noise import ManifestNoiser, NoiseSpec
from avsrctl.data.roi import apply_roi, check_mode, source_side
from avsrctl.data.sampler import FrameBucketSampler  # noqa: F401  (re-exported: dataset.FrameBucketSampler)
from avsrctl.errors import DataError, MediaError, UsageError

STREAMS = {"audio": (True, False), "video": (False, True), "both": (True, True)}  # modality -> (audio, video)


@dataclass(frozen=True)
class Sample:
    id: str
    text: str
    n_frames: int  # T, frames at 25 Hz
    audio: torch.Tensor | None  # (640*T,) float32 16 kHz mono
    video: torch.Tensor | None  # (T, 3, H, W) uint8 RGB mouth crops
    audio_features: torch.Tensor | None = None  # (2T, D_a) cached encoder output instead of audio
    video_features: torch.Tensor | None = None  # (T, D_v) cached encoder output instead of video
    articulation: torch.Tensor | None = None  # (T, P) float32 rendered mouth parameters (synthetic clips)
    video_corrupted: bool = False  # the video was replaced by a corrupted one (data.video_corruption)


def _streams(modality: str) -> tuple[bool, bool]:
    if modality not in STREAMS:
        raise UsageError(f"unknown modality {modality!r}; choose audio, video or both")
    return STREAMS[modality]


def decode_sample(
    uid: str,
    text: str,
    video_path: Path | None,
    audio_path: Path | None,
    *,
    roi: str = "auto",
    roi_size: int = 96,
    transform_audio=None,
    video: torch.Tensor | None = None,
) -> Sample:
    """Decode the given streams into a Sample. T comes from the video when there is one, else ceil(S / 640).

    `transform_audio(audio) -> audio` runs on the raw 16 kHz audio before alignment (noise).
    `video` (T, 3, H, W) uint8 is this clip's ROI frames decoded earlier; `video_path` is then not read.
    """
    n_frames = None if video is None else video.shape[0]
    if video is None and video_path is not None:
        frames = load_video(video_path, max_short_side=source_side(roi_size))  # (T, H, W, 3)
        frames = apply_roi(frames, roi, roi_size, path=video_path)  # (T, roi, roi, 3)
        n_frames = frames.shape[0]
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
    audio = None
    if audio_path is not None:
        samples = load_audio(audio_path)
        if transform_audio is not None:
            samples = transform_audio(samples)
        if n_frames is None:
            n_frames = frames_for_samples(samples.shape[0])
        audio = torch.from_numpy(align_audio(samples, n_frames))  # (640*T,)
    assert n_frames is not None, "decode_sample needs at least one stream"
    return Sample(uid, text, int(n_frames), audio, video)


def augment_video(video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One clip's training augmentation, the same for all its frames: (T, 3, H, W) uint8 -> a new tensor.

    Appearance is randomised widely and motion is kept, so a lip front-end trained on one kind of
    face (rendered, or one corpus's camera) meets other faces, cameras and crops as one more
    variation (domain randomisation):
    - geometry, as a mouth tracker's box varies: a horizontal flip (p = 0.5), a zoom of 0.88-1.15,
      a rotation of up to 7 degrees and a shift of up to 1/12 of each side (edges repeated);
    - colour and light: contrast x0.7-1.3 around the clip mean, brightness +-25 levels, a gain of
      +-12% per colour channel (other skin and lip colours) and a gamma of 0.75-1.35;
    - the camera: a Gaussian blur of up to 1/32 of the side (p = 0.5; MPEG and focus blur) and
      sensor noise of up to 6 levels (drawn once per clip, different in every frame).
    """
    T, C, H, W = video.shape
    x = video.float()  # (T, 3, H, W)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    zoom = float(rng.uniform(0.88, 1.15))
    angle = math.radians(float(rng.uniform(-7.0, 7.0)))
    dx, dy = (float(rng.uniform(-1.0, 1.0)) / 6.0 for _ in range(2))  # 1/12 of the side, in [-1, 1] units
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor([[cos * flip, -sin, dx], [sin * flip, cos, dy]], dtype=torch.float32)  # output -> input
    grid = F.affine_grid(theta.expand(T, 2, 3), [T, C, H, W], align_corners=False)  # (T, H, W, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (T, 3, H, W)
    if rng.random() < 0.5:
        x = gaussian_blur(x, float(rng.uniform(0.3, max(0.3, H / 32))))
    mean = x.mean()
    contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-25.0, 25.0)
    gain = torch.from_numpy(rng.uniform(0.88, 1.12, (1, C, 1, 1)).astype(np.float32))  # (1, 3, 1, 1)
    x = ((x - mean) * contrast + mean + brightness) * gain
    gamma = float(rng.uniform(0.75, 1.35))
    x = 255.0 * (x.clamp(0, 255) / 255.0) ** gamma
    sigma = float(rng.uniform(0.0, 6.0))
    if sigma > 0:
        noise = rng.standard_normal((T, C, H, W)).astype(np.float32) * sigma
        x = x + torch.from_numpy(noise)
    return x.round().clamp(0, 255).to(torch.uint8)


class AVDataset(torch.utils.data.Dataset):
    """Utterances of a manifest, decoded on access. Use `dataset.collate` as the DataLoader's collate_fn."""

    def __init__(
        self,
        manifest: Manifest,
        modality: str,
        *,
        roi: str = "auto",
        roi_size: int = 96,
        noise: NoiseSpec | None = None,
        seed: int = 0,
        frame_memory_mb: int = 0,
        video_augment: bool = False,
        video_corruption: float = 0.0,
        articulation: bool = False,
        with_audio: bool = False,
        judge_audio: bool = False,
    ):
        self.read_audio, self.read_video = _streams(modality)
        self.read_audio |= with_audio  # a video run whose lips train against the voice (model.losses.lip_sync)
        manifest.require("both" if with_audio and self.read_video else modality)
        # the audio a fused model hears only to judge lips read alone: read when it can be; a clip
        # whose audio fails is read without it, and its batch goes without (collate)
        self.audio_optional = judge_audio and not self.read_audio
        self.read_audio |= judge_audio
        check_mode(roi)
        if roi_size <= 0:
            raise UsageError(f"roi_size must be positive, got {roi_size}")
        self.manifest, self.modality, self.roi, self.roi_size = manifest, modality, roi, roi_size
        self.noise, self.seed, self.epoch = noise, seed, 0
        use_noise = noise is not None and noise.prob > 0 and self.read_audio
        self.noiser = ManifestNoiser(manifest, noise, seed) if use_noise else None
        self.skipped: dict[str, str] = {}
        self._pending: list[tuple[str, str]] = []  # skipped since the last collate
        self.features = None  # optional lookup(uid, n_frames) -> {'audio_features': ..., ...} or None
        self._index = {u.id: i for i, u in enumerate(manifest)}
        # Decoded ROI frames by manifest index, up to frame_memory_mb (ffmpeg costs more than a small
        # trainable video encoder's step); each DataLoader worker fills its own copy (the budget
        # is per worker), which lasts because the trainer keeps its workers across epochs.
        self._frames: dict[int, torch.Tensor] = {}
        self._frame_budget = frame_memory_mb << 20
        self.video_augment = video_augment
        self.video_corruption = video_corruption
        self._other_video: torch.Tensor | None = None  # the previous clip's frames: 'swap' shows another face
        # per-frame mouth parameters of rendered clips (video/<id>.mouth.npy), the targets of
        # model.losses.articulation; a corrupted clip carries none, since its frames no longer show them
        self.articulation = articulation and self.read_video

    def use_features(self, lookup) -> None:
        """Read cached encoder outputs instead of decoding media when `lookup(uid, n_frames)` has
        every stream this dataset reads (`{'audio_features': (2T, D_a), 'video_features': (T, D_v)}`).

        Decoding a clip with ffmpeg costs more than the rest of a step once the encoders are cached,
        so a warm feature cache skips it; a miss (or a partial hit) decodes as usual.
        """
        self.features = lookup

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def lengths(self) -> list[int]:
        """Manifest lengths in 25 Hz frames (for FrameBucketSampler; decoding may differ by a frame)."""
        return [max(1, u.n_frames) for u in self.manifest]

    def set_epoch(self, epoch: int) -> None:
        """Noise is drawn per (seed, epoch, index): call once per epoch, as for the sampler."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample | None:
        """Sample `index`, or `(index, epoch)`: DataLoader workers that stay alive across epochs
        hold their own copy of the dataset, which `set_epoch` in the main process never reaches."""
        if isinstance(index, tuple):
            index, epoch = index
            self.epoch = int(epoch)
        utt = self.manifest[index]
        if self.features is not None:
            found = self.features(utt.id, utt.n_frames)
            need = [
                name
                for name, read in (("audio_features", self.read_audio), ("video_features", self.read_video))
                if read
            ]
            if found is not None and all(found.get(n) is not None for n in need):
                return Sample(utt.id, utt.text, utt.n_frames, None, None, **{n: found[n] for n in need})
        return self._decode(index)

    def _decode(self, index: int) -> Sample | None:
        utt = self.manifest[index]
        transform = None
        if self.noiser is not None:

            def transform(audio, _i=index):
                return self.noiser(_i, audio, self.epoch)

        def read(audio: bool) -> Sample:
            return decode_sample(
                utt.id,
                utt.text,
                utt.video if self.read_video else None,
                utt.audio if audio else None,
                roi=self.roi,
                roi_size=self.roi_size,
                transform_audio=transform,
                video=self._frames.get(index),
            )

        try:
            try:
                sample = read(self.read_audio)
            except MediaError:
                if not self.audio_optional:
                    raise
                sample = read(False)
            if sample.video is not None and index not in self._frames and sample.video.numel() <= self._frame_budget:
                self._frames[index] = sample.video
                self._frame_budget -= sample.video.numel()
            if sample.video is not None and self.video_augment:
                rng = np.random.default_rng([self.seed, self.epoch, index, 0xF11F])
                sample = replace(sample, video=augment_video(sample.video, rng))
            if sample.video is not None and self.articulation:
                sample = replace(sample, articulation=read_articulation(utt.video, sample.n_frames))
            if sample.video is not None and self.video_corruption > 0:
                sample = self._corrupt(sample, index)
            return sample
        except MediaError as e:
            self.skipped[utt.id] = str(e)
            self._pending.append((utt.id, str(e)))
            return None

    def _corrupt(self, sample: Sample, index: int) -> Sample:
        """With probability `video_corruption`, replace the clip's video by a corrupted one (seeded per epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch, index, 0xBAD])
        other, self._other_video = self._other_video, sample.video
        if rng.random() >= self.video_corruption:
            return sample
        video, _ = corrupt_video(sample.video, rng, other=other)
        return replace(sample, video=video, articulation=None, video_corrupted=True)

    def collate(self, samples: Sequence[Sample | None]) -> Batch:
        """`collate` plus the ids this dataset skipped since the previous call (works inside workers).

        A batch mixing cached and decoded samples decodes the cached ones too, so every row of a
        batch has the same kind of input.
        """
        kept = [s for s in samples if s is not None]
        if any(s.audio is None and s.video is None for s in kept) and any(
            s.audio is not None or s.video is not None for s in kept
        ):
            samples = [
                s if s is None or s.audio is not None or s.video is not None else self._decode(self._index[s.id])
                for s in samples
            ]
        if self.audio_optional and len({s.audio is None for s in samples if s is not None}) > 1:
            samples = [s if s is None else replace(s, audio=None) for s in samples]  # optional audio: all or none
        pending, self._pending = self._pending, []
        return collate(samples, skipped=dict(pending))


def collate(samples: Sequence[Sample | None], skipped: dict[str, str] | Sequence[str] | None = None) -> Batch:
    """Pad samples into a Batch; None entries are dropped. `batch.meta['skipped']` lists skipped ids
    (`meta['skip_reasons']` maps them to the error), and a batch may be empty when all were skipped.
    """
    kept = [s for s in samples if s is not None]
    reasons = dict(skipped) if isinstance(skipped, dict) else {k: "" for k in (skipped or [])}
    meta = {"skipped": list(reasons), "skip_reasons": reasons}
    lengths = torch.tensor([s.n_frames for s in kept], dtype=torch.long)  # (B,)
    batch = Batch(ids=[s.id for s in kept], texts=[s.text for s in kept], lengths=lengths, meta=meta)
    if not kept:
        return batch
    t_max = int(lengths.max())
    for name, per_frame in (("audio_features", 2), ("video_features", 1)):  # cached encoder outputs
        rows = [getattr(s, name) for s in kept]
        if all(r is not None for r in rows):
            feats = rows[0].new_zeros(len(kept), per_frame * t_max, rows[0].shape[-1])  # (B, 2T | T, D)
            for i, r in enumerate(rows):
                feats[i, : r.shape[0]] = r
            setattr(batch, name, feats)
    has_audio = {s.audio is not None for s in kept}
    has_video = {s.video is not None for s in kept}
    if len(has_audio) > 1 or len(has_video) > 1:
        raise DataError(f"cannot batch samples with different streams: {[s.id for s in kept]}")
    if has_audio == {True}:
        audio = torch.zeros(len(kept), t_max * SAMPLES_PER_FRAME, dtype=torch.float32)  # (B, 640*T)
        for i, s in enumerate(kept):
            audio[i, : s.audio.shape[0]] = s.audio
        batch.audio = audio
    if has_video == {True}:
        shapes = {tuple(s.video.shape[1:]) for s in kept}
        if len(shapes) > 1:
            raise DataError(
                f"cannot batch videos of different frame sizes {sorted(shapes)} ({[s.id for s in kept]}); "
                "use one roi_size"
            )
        video = torch.zeros(len(kept), t_max, *shapes.pop(), dtype=torch.uint8)  # (B, T, 3, H, W)
        for i, s in enumerate(kept):
            video[i, : s.n_frames] = s.video
        batch.video = video
    if any(s.articulation is not None for s in kept):
        n_params = next(s.articulation.shape[-1] for s in kept if s.articulation is not None)
        target = torch.full((len(kept), t_max, n_params), float("nan"))  # (B, T, P); NaN: no target
        for i, s in enumerate(kept):
            if s.articulation is not None:
                target[i, : s.n_frames] = s.articulation
        batch.articulation = target
    if any(s.video_corrupted for s in kept):
        batch.video_corrupted = torch.tensor([s.video_corrupted for s in kept])  # (B,) bool
    return batch


def read_articulation(video: Path, n_frames: int) -> torch.Tensor:
    """(T, P) float32 mouth parameters stored beside a rendered clip, fitted to its decoded length
    (a decoder may give a frame more or less than the renderer wrote; the last value is repeated)."""
    path = mouth_path(video)
    try:
        track = np.load(path).astype(np.float32)
    except FileNotFoundError:
        raise DataError(
            f"{path}: no mouth parameters for this clip; model.losses.articulation needs the ones "
            "avsrctl demo-data stores beside each rendered clip",
            hint="set model.losses.articulation=0 for recorded video, or rerun demo-data on the corpus to add them",
        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the mouth parameters ({e})") from None
    if track.ndim != 2 or not len(track):
        raise DataError(f"{path}: mouth parameters must be a (frames, params) array, got shape {track.shape}")
    if len(track) < n_frames:
        track = np.concatenate([track, np.repeat(track[-1:], n_frames - len(track), 0)])
    return torch.from_numpy(track[:n_frames].copy())


def clip_streams(path: Path, info, modality: str | None) -> tuple[bool, bool]:
    """(read audio, read video) of one file for `modality` (None or 'auto': the streams it has);
    MediaError naming the file when it lacks a stream the modality needs."""
    if modality in (None, "auto"):
        if not (info.has_audio or info.has_video):
            raise MediaError(f"{path}: no audio or video stream")
        return info.has_audio, info.has_video
    want_audio, want_video = _streams(modality)
    for wanted, present, stream in ((want_audio, info.has_audio, "audio"), (want_video, info.has_video, "video")):
        if wanted and not present:
            other = "video" if stream == "audio" else "audio"
            raise MediaError(
                f"{path}: --modality {modality} needs {stream}, but the file has no {stream} stream",
                hint=f"use --modality {other}" if (info.has_audio or info.has_video) else None,
            )
    return want_audio, want_video


def load_clip(path: str | os.PathLike, modality: str | None = None, roi: str = "auto", roi_size: int = 96) -> Batch:
    """One media file as a Batch of one (transcribe, decode --single-file).

    modality None (or 'auto') reads the streams the file has; 'audio', 'video' or 'both'
    raise MediaError when the file lacks a stream the modality needs.
    """
    path = Path(path)
    check_mode(roi)
    want_audio, want_video = clip_streams(path, probe(path), modality)
    sample = decode_sample(
        path.stem, "", path if want_video else None, path if want_audio else None, roi=roi, roi_size=roi_size
    )
    batch = collate([sample])
    batch.meta["path"] = str(path)
    return batch


def bucket_stats(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> dict[str, float]:
    """Padding efficiency of a batching: real frames / padded frames, and batch count."""
    real = sum(int(lengths[i]) for b in batches for i in b)
    padded = sum(len(b) * max(int(lengths[i]) for i in b) for b in batches)
    return {
        "batches": len(batches),
        "real_frames": real,
        "padded_frames": padded,
        "efficiency": real / padded if padded else math.nan,
    }
