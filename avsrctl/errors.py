"""One family of library errors.

Every error the library raises on purpose derives from `AvsrError` and carries the
offending value in its message. The command line maps them to one line plus a hint and an
exit code: `UsageError` and its children exit 2 (the user asked for something invalid),
everything else exits 1 (a runtime failure). Tracebacks only appear with `--debug`.
"""

from __future__ import annotations


class AvsrError(Exception):
    """Base class of every deliberate avsrctl error."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UsageError(AvsrError):
    """The user asked for something that cannot work (bad flag, bad value)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file, preset or `--set` override is invalid."""

    hint = "run `avsrctl <command> --help`, or start from a preset: --config tiny (any run) or --config offline-small"


class DataError(AvsrError):
    """A manifest, transcript or data folder is invalid (names the file and line)."""

    hint = "check the manifest against the layout in the README (root line, then id, video, audio, n_video, n_audio)"


class MediaError(DataError):
    """A media file cannot be decoded (missing stream, truncated, zero length)."""

    hint = "check the file with `ffprobe`; re-encode or drop it from the manifest"


class ModelError(AvsrError):
    """A model component cannot be built or loaded."""

    hint = "check the model section of the config; components load from hub ids or local paths"


class CheckpointError(AvsrError):
    """A checkpoint folder is missing, incomplete, unsafe or from another configuration."""

    hint = "point --checkpoint at a folder written by `avsrctl train` (it holds config.yaml and model.safetensors)"


class TrainingError(AvsrError):
    """Training cannot continue (repeated non-finite losses, unwritable output, ...)."""
