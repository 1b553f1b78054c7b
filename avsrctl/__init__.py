"""avsrctl: audio-visual speech recognition with a large language model as the decoder.

The package root stays import-light (no torch, no transformers) so that the command line
starts instantly; heavy modules are imported by the commands that need them.
"""

import os

__version__ = "0.1.0"

# onnxruntime (faster-whisper's Silero VAD) writes a device id and a telemetry database to
# ~/.cache/Microsoft/DeveloperTools/ as soon as it is imported (seen with 1.32 on Linux);
# `onnxruntime.disable_telemetry_events()` comes too late for that, this variable stops it.
# Set here, before any avsrctl module can import onnxruntime; a user's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
