"""Feature cache: frozen encoder outputs stored once, in float16 shards, reused on later passes.

With frozen encoders the Whisper and CLIP outputs of an utterance never change, yet a plain
training run recomputes them every epoch (most of the compute for a small connector + LoRA).
`--cache-features DIR` stores them once:

    DIR/cache.json                           {"format": 2, "dtype": "float16"}
    DIR/audio/<writer>-<n>.safetensors       one tensor per utterance, named by its key: (2T, D_a)
    DIR/video/<writer>-<n>.safetensors       (T, D_v)

Entries are float16 (half the bytes of float32) and are cast back to the compute dtype
(float32) on read; an entry whose values overflow float16 is kept in float32. A writer
collects entries in memory and writes a shard of up to `shard_bytes` (64 MiB: ~330 Whisper
tiny utterances of LRS3's mean 10.4 s) under a temporary name, then renames it, so readers
(other ranks, DataLoader workers, a second run) only ever see whole shards, and a killed
writer loses at most its unwritten entries, which the next run computes again. Shards are
never modified after the rename. Each shard's safetensors header is its index (key -> offset);
a reader lists the shards once and again after a miss (at most every `rescan_s`).

Size per hour of audio (float16, from the format: frames/s x width x 2 bytes):
Whisper tiny (384-d, 50 Hz) 138 MB/h; Whisper medium (1024-d, 50 Hz) 369 MB/h; a 768-d video
encoder at 25 Hz 138 MB/h. Float32 is twice each.

The key is sha1 of (stream, sha1 of the media file's bytes, encoder identity, preprocessing:
frames T, and roi / roi_size for video). Editing a media file or changing the encoder (its
identity covers the weights) therefore misses the old entry and computes a new one; stale
entries are simply never read again.

Noisy training audio differs every epoch, so audio features are neither cached nor reused
while training noise is on (video features still are). Augmented training video likewise
differs every epoch: `check_cacheable` refuses `data.video_augment` with a cached video stream.
The one-file-per-utterance float32 cache of earlier versions is refused with a message to
delete it (it is rebuilt on the next run).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from avsrctl.atomic import write_atomic
from avsrctl.errors import DataError, UsageError

STREAMS = ("audio", "video")
FORMAT = 2  # 1: one float32 file per utterance under DIR/<stream>/<key[:2]>/ (refused)
MANIFEST = "cache.json"
STORE_DTYPE = torch.float16
FP16_MAX = torch.finfo(torch.float16).max  # 65504: larger values are stored in float32
SHARD_BYTES = 64 << 20
SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32", "BF16": "bfloat16"}
OPEN_SHARDS = 64  # safetensors handles kept open per process (each is an mmap)


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


def check_format(root: Path, create: bool) -> None:
    """Refuse a cache folder in another format; with `create`, mark a new one as this format."""
    marker = root / MANIFEST
    rebuild = f"delete {root} (or point --cache-features at a new folder): the cache is rebuilt on the next run"
    if marker.is_file():
        try:
            found = json.loads(marker.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError) as e:
            raise UsageError(f"{marker}: unreadable feature cache description ({e})", hint=rebuild) from None
        if found != FORMAT:
            raise UsageError(
                f"{root} is a feature cache in format {found}; this avsrctl reads format {FORMAT}", hint=rebuild
            )
        return
    for stream in STREAMS:
        folder = root / stream
        if folder.is_dir() and any(p.is_dir() and len(p.name) == 2 for p in folder.iterdir()):
            raise UsageError(
                f"{root} holds a feature cache of an earlier avsrctl (one float32 file per utterance, "
                f"{folder}/<xx>/...)",
                hint=rebuild,
            )
    if create:  # concurrent ranks write the same bytes
        write_atomic(
            marker,
            lambda tmp: tmp.write_text(json.dumps({"format": FORMAT, "dtype": "float16"}) + "\n", encoding="utf-8"),
        )


def to_storage(features: torch.Tensor) -> torch.Tensor:
    """float16 on the CPU, or float32 when a value would overflow float16."""
    x = features.detach().to("cpu")
    if x.is_floating_point() and bool((x.abs() <= FP16_MAX).all()):
        return x.to(STORE_DTYPE).contiguous()
    return x.float().contiguous()


class _Shards:
    """The shard files of one stream: key -> shard index, open handles, and rescans for new shards."""

    def __init__(self, folder: Path, rescan_s: float):
        self.folder, self.rescan_s = folder, rescan_s
        self.where: dict[str, Path] = {}
        self.known: set[str] = set()
        self.bad: set[str] = set()
        self.handles: OrderedDict[Path, Any] = OrderedDict()
        self.scanned = -float("inf")

    def scan(self) -> None:
        self.scanned = time.monotonic()
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".safetensors") and not n.startswith("."))
        except FileNotFoundError:
            return
        for name in names:
            if name in self.known:
                continue
            self.known.add(name)
            path = self.folder / name
            try:
                keys = list(self._open(path).keys())
            except (SafetensorError, OSError):
                self.bad.add(name)  # a damaged shard: its entries are computed and stored again
                continue
            for key in keys:
                self.where.setdefault(key, path)

    def _open(self, path: Path) -> Any:
        handle = self.handles.get(path)
        if handle is None:
            handle = self.handles[path] = safe_open(str(path), framework="pt")
            while len(self.handles) > OPEN_SHARDS:
                self.handles.popitem(last=False)
        self.handles.move_to_end(path)
        return handle

    def get(self, key: str) -> torch.Tensor | None:
        path = self.where.get(key)
        if path is None and time.monotonic() - self.scanned >= self.rescan_s:
            self.scan()  # another rank or run may have written it since
            path = self.where.get(key)
        if path is None:
            return None
        try:
            return self._open(path).get_tensor(key)
        except (SafetensorError, OSError):
            self.where.pop(key, None)
            return None

    def __getstate__(self) -> dict:  # DataLoader workers: handles are reopened there
        return {**self.__dict__, "handles": OrderedDict()}


class FeatureCache:
    """Per-utterance encoder outputs on disk, keyed by media content + encoder + preprocessing.

    `media` maps utterance id -> {'audio': path, 'video': path}; `identities` maps stream ->
    encoder identity (streams without one are not cached); `preprocessing` holds the options
    that change encoder input (roi, roi_size). Entries come back as `dtype` (the compute dtype).
    Call `flush()` at the end of an epoch so DataLoader workers and other ranks see its entries.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        media: dict[str, dict[str, Path | None]],
        identities: dict[str, str | None],
        preprocessing: dict[str, Any],
        dtype: torch.dtype = torch.float32,
        shard_bytes: int = SHARD_BYTES,
        rescan_s: float = 30.0,
    ):
        self.root = Path(root)
        self.media = media
        self.identities = {s: i for s, i in identities.items() if i}
        self.preprocessing = preprocessing
        self.dtype, self.shard_bytes = dtype, int(shard_bytes)
        self.hits = 0
        self.misses = 0
        try:
            check_format(self.root, create=True)
            for s in self.identities:
                (self.root / s).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the feature cache folder {self.root}: {e.strerror}") from None
        self.shards = {s: _Shards(self.root / s, rescan_s) for s in self.identities}
        for shards in self.shards.values():
            shards.scan()
        self.pending: dict[str, dict[str, torch.Tensor]] = {s: {} for s in self.identities}  # not yet written
        self.pending_bytes = {s: 0 for s in self.identities}
        self.written = [0]  # shards written by this object (shared with the exit hook)
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns():x}"
        self._finalizer = weakref.finalize(
            self,
            FeatureCache._flush_all,
            self.root,
            self.writer,
            self.identities,
            self.pending,
            self.pending_bytes,
            self.written,
        )

    def __getstate__(self) -> dict:  # a worker reads; the parent alone writes its pending entries
        state = {k: v for k, v in self.__dict__.items() if k != "_finalizer"}
        state["pending"] = {s: {} for s in self.identities}
        state["pending_bytes"] = {s: 0 for s in self.identities}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def key(self, stream: str, uid: str, n_frames: int) -> str | None:
        path = self.media.get(uid, {}).get(stream)
        if path is None or stream not in self.identities:
            return None
        parts = {
            "stream": stream,
            "media": file_sha1(Path(path)),
            "encoder": self.identities[stream],
            "frames": int(n_frames),
        }
        if stream == "video":
            parts.update(self.preprocessing)
        return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _read(self, stream: str, key: str) -> torch.Tensor | None:
        row = self.pending[stream].get(key)
        if row is None:
            row = self.shards[stream].get(key)
        return None if row is None else row.to(self.dtype)

    def _write(self, stream: str, key: str, features: torch.Tensor) -> None:
        row = to_storage(features)
        if key not in self.pending[stream]:
            self.pending_bytes[stream] += row.numel() * row.element_size()
        self.pending[stream][key] = row
        if self.pending_bytes[stream] >= self.shard_bytes:
            self._flush_stream(stream)

    def _flush_stream(self, stream: str) -> None:
        path = FeatureCache._write_shard(
            self.root, self.writer, stream, self.identities[stream], self.pending[stream], self.written
        )
        if path is not None:
            shards = self.shards[stream]
            for key in self.pending[stream]:
                shards.where.setdefault(key, path)
            shards.known.add(path.name)
        self.pending[stream].clear()
        self.pending_bytes[stream] = 0

    @staticmethod
    def _write_shard(
        root: Path, writer: str, stream: str, identity: str, rows: dict[str, torch.Tensor], written: list[int]
    ) -> Path | None:
        if not rows:
            return None
        path = root / stream / f"{writer}-{written[0]:05d}.safetensors"
        written[0] += 1
        meta = {"format": str(FORMAT), "stream": stream, "encoder": identity}
        write_atomic(path, lambda tmp: save_file(dict(rows), str(tmp), metadata=meta))  # readers see whole shards
        return path

    @staticmethod
    def _flush_all(root, writer, identities, pending, pending_bytes, written) -> None:
        """At exit (or when the cache is garbage-collected): write what was never flushed."""
        for stream, rows in pending.items():
            if rows:
                try:
                    FeatureCache._write_shard(root, writer, stream, identities[stream], rows, written)
                except OSError:
                    pass  # the folder is gone (a removed temporary cache): nothing to keep
                rows.clear()
                pending_bytes[stream] = 0

    def flush(self) -> None:
        """Write the entries collected in memory as shards (end of an epoch, end of a run)."""
        for stream in self.pending:
            if self.pending[stream]:
                self._flush_stream(stream)

    close = flush

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
            rows = [self._read(stream, k) for k in keys]
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
                        self._write(stream, k, feats[i, : per_frame * n])
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
            row = self._read(stream, key)
            if row is None or row.shape[0] != (2 if stream == "audio" else 1) * n_frames:
                return None
            found[f"{stream}_features"] = row
        self.hits += len(found)
        return found

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


def cache_info(root: str | os.PathLike) -> dict[str, Any]:
    """What a cache folder holds: bytes, shards, entries, hours and encoders per stream."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"feature cache folder not found: {root}")
    check_format(root, create=False)
    if not (root / MANIFEST).is_file():
        raise DataError(
            f"{root} is not a feature cache (no {MANIFEST})", hint="point at the folder given to --cache-features"
        )
    info: dict[str, Any] = {"path": str(root.resolve()), "format": FORMAT, "bytes": 0, "entries": 0, "streams": {}}
    for stream in STREAMS:
        folder = root / stream
        if not folder.is_dir():
            continue
        s = {
            "shards": 0,
            "entries": 0,
            "bytes": 0,
            "hours": 0.0,
            "dtypes": {},
            "encoders": {},
            "damaged": [],
            "unfinished": 0,
        }
        keys: set[str] = set()
        per_second = 50 if stream == "audio" else 25  # rows per second of speech
        for path in sorted(folder.iterdir()):
            if path.name.endswith(".tmp"):
                s["unfinished"] += 1  # a writer's temporary shard: still writing, or killed
                continue
            if not path.name.endswith(".safetensors"):
                continue
            s["shards"] += 1
            s["bytes"] += path.stat().st_size
            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                    names = list(f.keys())
                    for name in names:
                        sl = f.get_slice(name)
                        rows = sl.get_shape()[0]
                        dtype = SAFETENSORS_DTYPES.get(sl.get_dtype(), str(sl.get_dtype()))
                        s["dtypes"][dtype] = s["dtypes"].get(dtype, 0) + 1
                        if name not in keys:
                            s["hours"] += rows / per_second / 3600
            except (SafetensorError, OSError):
                s["damaged"].append(path.name)
                continue
            encoder = meta.get("encoder", "?")
            s["encoders"][encoder] = s["encoders"].get(encoder, 0) + len(names)
            keys.update(names)
        s["entries"] = len(keys)
        s["bytes_per_hour"] = s["bytes"] / s["hours"] if s["hours"] else None
        info["streams"][stream] = s
        info["bytes"] += s["bytes"]
        info["entries"] += s["entries"]
    return info


def cache_streams(modality: str, *, noisy_audio: bool) -> tuple[str, ...]:
    """Streams whose features may be cached for a split: audio only when its input is clean."""
    wanted = {"audio": ("audio",), "video": ("video",), "both": ("audio", "video")}[modality]
    return tuple(s for s in wanted if not (s == "audio" and noisy_audio))


def check_cacheable(model: Any, modality: str, *, video_augment: bool = False) -> dict[str, str | None]:
    """Encoder identities for the streams of `modality`; a trainable encoder cannot be cached, nor
    augmented video (its features would be stored under the clean clip's key)."""
    if video_augment and "video" in cache_streams(modality, noisy_audio=False):
        raise UsageError(
            "--cache-features cannot store video features with data.video_augment=true: each epoch's "
            "augmented clip would be saved and reused under the clean clip's key",
            hint="drop --cache-features or set data.video_augment=false (or train --modality audio)",
        )
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
