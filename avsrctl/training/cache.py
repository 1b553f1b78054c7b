"""Feature cache: frozen encoder outputs stored per utterance, reused on later passes.

With frozen encoders the Whisper and CLIP outputs of an utterance never change, yet a plain
training run recomputes them every epoch (most of the compute for a small connector + LoRA).
`--cache-features DIR` stores them once:

    DIR/audio/ab/ab12....safetensors   tensor 'features' (2T, D_a)
    DIR/video/cd/cd34....safetensors   tensor 'features' (T, D_v)

The key is sha1 of (stream, sha1 of the media file's bytes, encoder identity, preprocessing:
frames T, and roi / roi_size for video). Editing a media file or changing the encoder (its
identity covers the weights) therefore misses the old entry and computes a new one; stale
entries are simply never read again.

Noisy training audio differs every epoch, so audio features are neither cached nor reused
while training noise is on (video features still are).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avsrctl.errors import UsageError

STREAMS = ("audio", "video")


def file_sha1(path: Path, _memo: dict[tuple[str, int, int], str] = {}) -> str:
    """sha1 of a file's bytes; memoised per (path, size, mtime) so each file is read once per run."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _memo.get(key)
    if digest is None:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _memo[key] = h.hexdigest()
    return digest


def encoder_identity(model: Any, stream: str) -> str | None:
    enc = getattr(model, f"{stream}_encoder", None)
    ident = getattr(enc, "identity", None)
    return str(ident) if ident else None


class FeatureCache:
    """Per-utterance encoder outputs on disk, keyed by media content + encoder + preprocessing.

    `media` maps utterance id -> {'audio': path, 'video': path}; `identities` maps stream ->
    encoder identity (streams without one are not cached); `preprocessing` holds the options
    that change encoder input (roi, roi_size).
    """

    def __init__(self, root: str | os.PathLike, *, media: dict[str, dict[str, Path | None]],
                 identities: dict[str, str | None], preprocessing: dict[str, Any]):
        self.root = Path(root)
        self.media = media
        self.identities = {s: i for s, i in identities.items() if i}
        self.preprocessing = preprocessing
        self.hits = 0
        self.misses = 0
        try:
            for s in self.identities:
                (self.root / s).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the feature cache folder {self.root}: {e.strerror}") from None

    def key(self, stream: str, uid: str, n_frames: int) -> str | None:
        path = self.media.get(uid, {}).get(stream)
        if path is None or stream not in self.identities:
            return None
        parts = {"stream": stream, "media": file_sha1(Path(path)), "encoder": self.identities[stream],
                 "frames": int(n_frames)}
        if stream == "video":
            parts.update(self.preprocessing)
        return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _path(self, stream: str, key: str) -> Path:
        return self.root / stream / key[:2] / f"{key}.safetensors"

    def _read(self, path: Path) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError):
            return None  # a damaged entry is recomputed and rewritten

    def _write(self, path: Path, features: torch.Tensor, uid: str, stream: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"features": features.detach().to("cpu").contiguous().clone()}, str(tmp),
                  metadata={"id": uid, "stream": stream, "encoder": self.identities[stream]})
        os.replace(tmp, path)  # concurrent ranks writing the same entry write the same bytes

    def fill(self, batch: Any, model: Any, streams: tuple[str, ...]) -> None:
        """Set `batch.audio_features` / `batch.video_features` for `streams`, from disk where every
        utterance of the batch is cached, else by running the encoder once and storing the rows."""
        if not len(batch):
            return
        lengths = [int(n) for n in batch.lengths.tolist()]
        for stream in streams:
            if stream not in self.identities or getattr(batch, stream) is None:
                continue
            per_frame = 2 if stream == "audio" else 1  # Whisper runs at 50 Hz, video at 25 Hz
            keys = [self.key(stream, uid, n) for uid, n in zip(batch.ids, lengths)]
            if any(k is None for k in keys):
                continue
            rows = [self._read(self._path(stream, k)) for k in keys]
            if all(r is not None and r.shape[0] == per_frame * n for r, n in zip(rows, lengths)):
                self.hits += len(rows)
                t_max = per_frame * max(lengths)
                feats = rows[0].new_zeros(len(rows), t_max, rows[0].shape[-1])  # (B, 2T | T, D)
                for i, r in enumerate(rows):
                    feats[i, : r.shape[0]] = r
            else:
                with torch.no_grad():
                    encode = getattr(model, f"encode_{stream}")
                    feats = encode(batch).detach()  # (B, 2T | T, D)
                for i, (k, n, r) in enumerate(zip(keys, lengths, rows)):
                    if r is None or r.shape[0] != per_frame * n:
                        self.misses += 1
                        self._write(self._path(stream, k), feats[i, : per_frame * n], batch.ids[i], stream)
                    else:
                        self.hits += 1
            device = batch.lengths.device
            setattr(batch, f"{stream}_features", feats.to(device))

    def lookup(self, uid: str, n_frames: int, streams: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
        """Every stream's cached features for one utterance of `n_frames` frames, or None on any miss."""
        found = {}
        for stream in streams:
            key = self.key(stream, uid, n_frames)
            if key is None:
                return None
            row = self._read(self._path(stream, key))
            if row is None or row.shape[0] != (2 if stream == "audio" else 1) * n_frames:
                return None
            found[f"{stream}_features"] = row
        self.hits += len(found)
        return found

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


def cache_streams(modality: str, *, noisy_audio: bool) -> tuple[str, ...]:
    """Streams whose features may be cached for a split: audio only when its input is clean."""
    wanted = {"audio": ("audio",), "video": ("video",), "both": ("audio", "video")}[modality]
    return tuple(s for s in wanted if not (s == "audio" and noisy_audio))


def check_cacheable(model: Any, modality: str) -> dict[str, str | None]:
    """Encoder identities for the streams of `modality`; a trainable encoder cannot be cached."""
    out = {}
    for stream in cache_streams(modality, noisy_audio=False):
        enc = getattr(model, f"{stream}_encoder", None)
        if enc is None:
            continue
        if any(p.requires_grad for p in enc.parameters()):
            raise UsageError(
                f"--cache-features needs frozen encoders, but the {stream} encoder is trainable",
                hint=f"set model.{stream}_encoder.frozen=true or drop --cache-features",
            )
        out[stream] = encoder_identity(model, stream)
    return out
