"""Ctrl-C and SIGTERM during training: the first asks for a stop after the current optimiser step
(with a checkpoint, exit 130), a second one stops at once without saving.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from avsrctl.errors import TrainingError


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM: the current step finished and a checkpoint was written."""

    exit_code = 130


class StopRequest:
    """Remembers the first SIGINT/SIGTERM; the trainer checks `pending` between optimiser steps."""

    def __init__(self, log: Callable[[str], None]):
        self.signum: int | None = None
        self._log = log

    @property
    def pending(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "signal on another rank"

    def request(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum

    def install(self) -> Callable[[], None]:
        """Catch SIGINT and SIGTERM (main thread only); returns the function that puts the old handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.signum is not None:  # a second Ctrl-C: stop now, without a checkpoint
                raise KeyboardInterrupt
            self.signum = signum
            self._log(
                f"[yellow]{signal.Signals(signum).name}: finishing the current step, then saving "
                f"a checkpoint (press Ctrl-C again to quit without saving)[/]"
            )

        for s in previous:
            signal.signal(s, handler)
        return lambda: [signal.signal(s, h) for s, h in previous.items()]
