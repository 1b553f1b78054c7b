"""avsrctl: audio-visual speech recognition with a large language model as the decoder.

The package root stays import-light (no torch, no transformers) so that the command line
starts instantly; heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"
