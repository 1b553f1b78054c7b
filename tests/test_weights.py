"""Weight fingerprints: the keys of converted-weight caches and of encoder identities."""

from __future__ import annotations

import os

from avsrctl.models import weights


def _pair(tmp_path, tail_a: bytes, tail_b: bytes):
    head = bytes(range(256)) * 8192  # 2 MiB shared: the header and the first tensors of one base model
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(head + tail_a)
    b.write_bytes(head + tail_b)
    return a, b


def test_fine_tunes_with_the_same_head_and_size_differ(tmp_path):
    a, b = _pair(tmp_path, b"\x01" * 4096, b"\x02" * 4096)
    assert a.stat().st_size == b.stat().st_size
    assert weights.file_fingerprint(a) != weights.file_fingerprint(b)
    assert weights.path_fingerprint(a) == weights.file_fingerprint(a)


def test_a_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    a, _ = _pair(tmp_path, b"\x01", b"\x02")
    calls = []
    real = weights._hash_file
    monkeypatch.setattr(weights, "_hash_file", lambda p: calls.append(p) or real(p))
    first = weights.file_fingerprint(a)
    assert weights.file_fingerprint(a) == first and len(calls) == 1
    a.write_bytes(a.read_bytes()[:-1] + b"\x03")  # same size, new content
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a distinct mtime even on coarse clocks
    assert weights.file_fingerprint(a) != first and len(calls) == 2


def test_a_sharded_folder_is_keyed_by_every_shard(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"first shard")
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"second shard, v1")
    before = weights.path_fingerprint(folder)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"second shard, v2")
    assert weights.path_fingerprint(folder) != before
