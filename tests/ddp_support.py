"""A training run with a planned batch order, for tests/test_distributed.py.

Run as `torchrun --nproc-per-node N tests/ddp_support.py CORPUS OUTPUT PLAN_JSON` (or with plain
`python` for one process). PLAN_JSON maps the world size to each rank's list of batches (lists
of manifest indices), so a test decides which rank sees which utterance on which step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


class PlannedSampler:
    """FrameBucketSampler's interface, yielding the batches the plan gives this rank."""

    plan: dict = {}

    def __init__(self, lengths, max_frames, max_batch, shuffle=True, seed=0, num_replicas=1, rank=0):
        self.batches = [list(b) for b in self.plan[str(num_replicas)][rank]]

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self):
        return iter([list(b) for b in self.batches])

    def __len__(self) -> int:
        return len(self.batches)


def main(corpus: str, output: str, plan: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from training_support import tiny_config

    import avsrctl.data.dataset as dataset
    from avsrctl.training.run import run_training

    PlannedSampler.plan = json.loads(plan)
    dataset.FrameBucketSampler = PlannedSampler  # what the Trainer builds its sampler from
    cfg = tiny_config(Path(corpus), Path(output), train__max_epochs=1, train__save_every=0, train__log_every=1)
    run_training(cfg, modality="video", device="cpu")


if __name__ == "__main__":
    main(*sys.argv[1:4])
