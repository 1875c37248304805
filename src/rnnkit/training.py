"""Plumbing every training loop shares (language models and sequence tasks alike)."""

from __future__ import annotations

import signal
import threading


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


class StopFlag:
    """Turns Ctrl-C into a request honoured between steps, so no update is left half done.

    Used as a context manager around the loop; ``requested`` turns True at the first SIGINT,
    a second one raises KeyboardInterrupt at once.  Outside the main thread it does nothing.
    """

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
