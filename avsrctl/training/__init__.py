"""Training: the optimisation loop, checkpoints, learning-rate schedule, parameter-update table,
encoder feature cache, multi-process (torchrun) helpers and progress reporting.

Import the submodules directly (`from avsrctl.training.checkpoint import load_checkpoint`);
this package root imports nothing heavy.
"""
