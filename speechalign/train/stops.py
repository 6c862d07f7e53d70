"""Clean stops: SIGTERM (a cluster's pre-emption) or SIGINT (Ctrl-C) asks the training loop to write a
checkpoint at the end of the current optimizer step and stop, instead of dying between checkpoints.

The loop polls :attr:`StopSignals.received` at step boundaries only: a checkpoint taken mid-accumulation
would count batches whose gradients it does not hold, and the resumed run would no longer be bit-identical.
A second Ctrl-C aborts at once (without a checkpoint), for when the step itself hangs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("speechalign.train")
HANDLED = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(RuntimeError):
    """Training stopped on a signal after writing its checkpoint; ``exit_code`` follows the shell's 128 + N."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """Context manager: while inside, SIGTERM and SIGINT set :attr:`received` instead of killing."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}
        self._pid = os.getpid()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return      # a forked loader worker (Ctrl-C reaches the whole group): the main process stops it
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        log.warning("%s received: stopping after the current step with a checkpoint%s", signal.Signals(signum).name,
                    " (Ctrl-C again aborts without one)" if signum == signal.SIGINT else "")

    def __enter__(self) -> StopSignals:
        # Python lets only the main thread install handlers; a trainer run in a thread keeps the defaults.
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
