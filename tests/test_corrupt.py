from __future__ import annotations

import numpy as np
import pytest
import torch

from avsrctl.data.corrupt import VIDEO_CORRUPTIONS, corrupt_video


def _clip(T=40, H=24, W=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("kind", VIDEO_CORRUPTIONS)
def test_each_corruption_keeps_shape_and_changes_the_clip(kind):
    video, other = _clip(), _clip(T=25, H=32, W=32, seed=1)
    out, used = corrupt_video(video, np.random.default_rng(0), kind, other=other)
    assert used == kind
    assert out.shape == video.shape and out.dtype == torch.uint8
    assert not torch.equal(out, video)


def test_corruptions_do_what_their_names_say():
    video = _clip()
    rng = np.random.default_rng(0)
    frozen, _ = corrupt_video(video, rng, "freeze")
    assert all(torch.equal(frozen[0], f) for f in frozen)
    blank, _ = corrupt_video(video, rng, "blank")
    assert blank.unique().numel() == 1
    blurred, _ = corrupt_video(video, rng, "blur")
    assert blurred.float().std() < 0.5 * video.float().std()
    shifted, _ = corrupt_video(video, np.random.default_rng(3), "shift")
    matches = [s for s in range(-30, 31) if torch.equal(shifted[15], video[min(max(15 + s, 0), 39)]) and s != 0]
    assert matches and all(abs(s) >= 10 for s in matches)
    other = _clip(seed=5)
    swapped, _ = corrupt_video(video, rng, "swap", other=other)
    assert torch.equal(swapped, other)


def test_swap_without_another_clip_freezes_and_draws_are_seeded():
    video = _clip()
    out, used = corrupt_video(video, np.random.default_rng(0), "swap")
    assert used == "freeze"
    a = corrupt_video(video, np.random.default_rng(7))
    b = corrupt_video(video, np.random.default_rng(7))
    assert a[1] == b[1] and torch.equal(a[0], b[0])
    assert {corrupt_video(video, np.random.default_rng(s))[1] for s in range(40)} == set(VIDEO_CORRUPTIONS) - {"swap"}


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown video corruption"):
        corrupt_video(_clip(), np.random.default_rng(0), "melt")
