from __future__ import annotations

import pytest
import torch

from avsrctl.errors import ModelError
from avsrctl.models.connector import AudioConnector, VideoConnector, compress_tokens, n_compressed


@pytest.mark.parametrize(
    "T, k, expected", [(75, 3, 25), (75, 2, 38), (74, 3, 25), (76, 3, 26), (1, 3, 1), (2, 2, 1), (3, 2, 2), (40, 1, 40)]
)
def test_token_count_is_ceil_T_over_K(T, k, expected):
    x = torch.arange(T, dtype=torch.float32).view(1, T, 1)  # frame t carries the value t
    tokens, mask = compress_tokens(x, torch.tensor([T]), k)
    assert tokens.shape == (1, expected, 1)
    assert int(mask.sum()) == expected
    assert int(n_compressed(torch.tensor([T]), k)) == expected
    groups = [range(T)[i : i + k] for i in range(0, T, k)]  # consecutive frames, the last group partial
    assert tokens[0, :, 0].tolist() == pytest.approx([sum(g) / len(g) for g in groups])


def test_compression_is_a_mean_over_real_frames_only():
    x = torch.arange(7, dtype=torch.float32).view(1, 7, 1).expand(2, 7, 1).clone()  # (B, T, 1)
    lengths = torch.tensor([7, 5])
    tokens, mask = compress_tokens(x, lengths, 3)
    assert tokens.shape == (2, 3, 1)
    # row 0: groups (0,1,2) (3,4,5) (6) -> means 1, 4, 6; the partial group is not diluted by padding
    assert tokens[0, :, 0].tolist() == [1.0, 4.0, 6.0]
    # row 1 has 5 frames: (0,1,2) (3,4) -> 1, 3.5; the third token is padding
    assert tokens[1, :2, 0].tolist() == [1.0, 3.5]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_padding_never_changes_a_rows_tokens():
    torch.manual_seed(0)
    conn = VideoConnector(16, 32, 24, compression=2)
    short = torch.randn(1, 9, 16)
    alone, _ = conn(short, torch.tensor([9]))
    padded = torch.cat([short, torch.randn(1, 6, 16) * 100], 1)  # garbage past the length
    batched, mask = conn(torch.cat([padded, torch.randn(1, 15, 16)]), torch.tensor([9, 15]))
    n = int(mask[0].sum())
    assert n == 5
    torch.testing.assert_close(batched[0, :n], alone[0])


def test_audio_connector_pools_adjacent_whisper_frames_to_25hz():
    torch.manual_seed(0)
    conn = AudioConnector(12, 20, 16, compression=3)
    T = 10
    feats = torch.randn(2, 2 * T, 12)  # (B, 2T, D_a) at 50 Hz
    lengths = torch.tensor([T, 7])
    projected = conn.project(feats, lengths)
    assert projected.shape == (2, T, 16)
    expected = conn.mlp((feats[0, 0::2] + feats[0, 1::2]) / 2)  # frame t = mean of 50 Hz frames 2t, 2t+1
    torch.testing.assert_close(projected[0], expected)
    assert projected[1, 7:].abs().sum() == 0  # frames past the length are zero
    tokens, mask = conn(feats, lengths)
    assert tokens.shape == (2, 4, 16) and mask.sum(1).tolist() == [4, 3]


def test_connectors_compute_in_float32_whatever_the_input_dtype():
    conn = VideoConnector(8, 8, 8, compression=2)
    tokens, _ = conn(torch.randn(1, 4, 8, dtype=torch.bfloat16), torch.tensor([4]))
    assert tokens.dtype == torch.float32
    assert conn.mlp[0].weight.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's mixed precision does not reach them
        tokens, _ = conn(torch.randn(1, 4, 8), torch.tensor([4]))
    assert tokens.dtype == torch.float32


def test_audio_features_shorter_than_the_frames_are_an_error():
    conn = AudioConnector(8, 8, 8, compression=3)
    with pytest.raises(ModelError, match="audio features have 10 frames"):
        conn(torch.randn(1, 10, 8), torch.tensor([6]))  # 6 frames need 12 Whisper frames
    with pytest.raises(ModelError, match="expects features"):
        conn(torch.randn(1, 12, 9), torch.tensor([6]))


def test_bad_compression_is_rejected():
    with pytest.raises(ModelError, match="K must be >= 1"):
        VideoConnector(8, 8, 8, compression=0)
