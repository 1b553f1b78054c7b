"""Training: the optimisation loop, the run folder, trainer state in checkpoints, the learning-rate
schedule, parameter-update table, encoder feature cache, multi-process (torchrun) helpers,
progress reporting and adaptation (`avsrctl adapt`). Outside this package only the commands that
train or read its cache import it: cli/train.py, cli/adapt.py and cli/cache.py (tests/test_layout.py).
"""
