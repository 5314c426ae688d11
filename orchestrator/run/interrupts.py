"""SIGINT, SIGTERM and SIGHUP all stop a run the same way: as an interrupt that unwinds through
the code that kills the agents and releases the hosts, so a closed terminal or a job
scheduler's `kill` leaves nothing running, as Ctrl-C does."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import threading
from typing import Iterator

log = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; a KeyboardInterrupt, so every `except BaseException`
    clean-up that Ctrl-C goes through runs for SIGTERM and SIGHUP too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        # As a shell reports a process ended by that signal: 130 for SIGINT, 143 SIGTERM, 129 SIGHUP.
        return 128 + self.signum


class PairStopped(KeyboardInterrupt):
    """Raised in a pair's thread when the run is interrupted (signals reach the main thread only):
    a KeyboardInterrupt, so that pair's clean-up (its agents killed, its hosts released) runs as
    a one-pair run's does."""


def interrupt_threads(idents: list[int]) -> None:
    """Raise PairStopped in each of these threads at its next Python instruction. CPython's own
    PyThreadState_SetAsyncExc: the one way to unwind a thread that waits on its hosts without
    threading a stop flag through every wait of the host layer."""
    for ident in idents:
        if ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(PairStopped)) != 1:
            log.warning("thread %d: could not be interrupted (it has ended)", ident)


def exit_status(exc: KeyboardInterrupt) -> int:
    return exc.exit_status if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def signal_name(exc: KeyboardInterrupt) -> str:
    return exc.name if isinstance(exc, Interrupted) else "SIGINT"


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within this block the first of SIGINT, SIGTERM or SIGHUP raises Interrupted in the main
    thread. Later ones are logged and ignored, so that they cannot cut short the clean-up the
    first one started (SIGKILL still ends us; the agents then end by their own lifetime limit,
    and `--resume` ends any that are left)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    stopping = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            log.warning("%s received while stopping: ignored, the clean-up goes on", signal.Signals(signum).name)
            return
        stopping = True
        log.warning("%s received: stopping the agents on the run's hosts", signal.Signals(signum).name)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
