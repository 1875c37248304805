"""Errors and signals every training run shares (language models and sequence tasks alike)."""

from __future__ import annotations

import signal
import threading

# Exit status of a run stopped by a signal, as a shell reports it: 128 + the signal number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


class StopFlag:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request honoured between steps.

    ``timeout``, ``kill``, Slurm and ``docker stop`` send SIGTERM; it is handled exactly like
    Ctrl-C: the step in progress finishes, the training state is saved, the run ends.  Used as
    a context manager around the loop; ``requested`` turns True at the first signal and
    ``signum`` remembers which one (for the exit status, :data:`EXIT_CODES`).  A second
    signal raises KeyboardInterrupt at once.  Outside the main thread it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second signal: give up at once
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)
