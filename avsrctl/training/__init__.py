"""Training: the optimisation loop, the run folder, trainer state in checkpoints, the learning-rate
schedule, parameter-update table, encoder feature cache, multi-process (torchrun) helpers and
progress reporting. Only `avsrctl train` (cli/train.py) imports this package.
"""
